"""Docs that cannot rot: README.md and docs/**/*.md are checked against the code, in process.

The rules are in the docstring of tests/docs_check.py. In short:
- commands: `python src/train.py|eval.py ...` overrides compose against conf/ (each sweep value
  under -m), `python src/sweep.py|study.py ...` options parse and the sweep file / study loads,
  other scripts and `python -m lfm...` exist and their argparse options parse, `make TARGET VAR=...`
  names a target and a Makefile variable and its recipe passes the same checks;
- links: relative links and images resolve (and #anchors name a heading);
- paths: repository paths in code (src/, conf/, docs/, benchmarks/, notebooks/, tests/) exist;
- config keys: dotted keys in tables and `key=value` overrides in the text exist in the config;
- blocks: yaml blocks load (a whole sweep or study file with the project's loader), python
  blocks compile, json blocks parse;
- Python names: `lfm.<module>.<name>` and `from lfm... import ...` resolve in src/lfm.
docs/study/embedded/ is a generated report: only its links are checked.

The tests below the per-file ones feed the checker broken snippets, to show each rule bites.
"""

from pathlib import Path

import pytest
from docs_check import DocsChecker, extract_commands, read_markdown, split_command, strip_comment

ROOT = Path(__file__).resolve().parents[1]
GENERATED = ROOT / "docs" / "study" / "embedded"
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
WRITTEN = [path for path in DOCS if GENERATED not in path.parents]
CHECKS = ["commands", "links", "paths", "config_keys", "blocks", "python_names"]
CASES = [
    pytest.param(path, check, id=f"{path.relative_to(ROOT).as_posix()}-{check}")
    for path in DOCS
    for check in CHECKS
    if path in WRITTEN or check == "links"
]


@pytest.fixture(scope="module")
def checker() -> DocsChecker:
    return DocsChecker(ROOT)


@pytest.mark.parametrize(("path", "check"), CASES)
def test_docs(checker, path, check):
    problems = getattr(checker, f"check_{check}")(checker.read(path))
    assert not problems, f"{len(problems)} problem(s):\n" + "\n".join(problems)


def test_the_docs_are_found():
    assert ROOT / "README.md" in DOCS
    assert len(WRITTEN) >= 2


# ----------------------------------------------------------------------------------------------
# The checker catches breakage


def problems_of(checker: DocsChecker, tmp_path: Path, check: str, text: str, name: str = "doc.md") -> list[str]:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return getattr(checker, f"check_{check}")(checker.read(path))


def test_catches_an_unknown_hydra_key(checker, tmp_path):
    text = "```bash\npython src/train.py model.not_a_key=1\n```\n"
    problems = problems_of(checker, tmp_path, "commands", text)
    assert len(problems) == 1 and "doc.md:2:" in problems[0] and "model.not_a_key" in problems[0], problems
    assert not problems_of(checker, tmp_path, "commands", "```bash\npython src/train.py +model.not_a_key=1\n```\n")


def test_catches_hydra_errors_in_inline_and_continued_commands(checker, tmp_path):
    text = (
        "Run `.venv/bin/python src/eval.py ckpt_path=... attack=no_such_attack` or\n\n"
        "```bash\n$ python src/train.py experiment=lfm_resnet18_synthetic \\\n    data=no_such_data   # a comment\n```\n"
    )
    problems = problems_of(checker, tmp_path, "commands", text)
    assert len(problems) == 2, problems
    assert "doc.md:1:" in problems[0] and "no_such_attack" in problems[0]
    assert "doc.md:4:" in problems[1] and "no_such_data" in problems[1]


def test_multirun_composes_each_sweep_value(checker, tmp_path):
    good = "```bash\npython src/train.py -m experiment=lfm_resnet18_synthetic model.lfm.mask_ratio=0.25,0.5\n```\n"
    assert not problems_of(checker, tmp_path, "commands", good)
    bad = "```bash\npython src/train.py -m experiment=lfm_resnet18_synthetic,no_such_experiment\n```\n"
    assert any("no_such_experiment" in problem for problem in problems_of(checker, tmp_path, "commands", bad))
    no_m = "```bash\npython src/train.py model.lfm.mask_ratio=0.25,0.5\n```\n"
    assert problems_of(checker, tmp_path, "commands", no_m), "a sweep without -m is an error"


def test_hydra_flags_and_placeholders(checker, tmp_path):
    text = (
        "```bash\n"
        "python src/train.py --cfg job experiment=lfm_resnet18_synthetic\n"
        "python src/train.py --help\n"
        "python src/eval.py ckpt_path=outputs/train/<run>/<time>/checkpoints/best.ckpt data=<dataset>\n"
        "python src/train.py <same overrides> hydra.run.dir=outputs/train/<run>/<time>\n"
        "python src/eval.py ckpt_path=outputs/x/best.ckpt model.rerank=true save_features=true\n"
        "```\n"
    )
    assert not problems_of(checker, tmp_path, "commands", text)
    bad = "```bash\npython src/train.py --cfg everything\npython src/train.py --no-such-flag\n```\n"
    assert len(problems_of(checker, tmp_path, "commands", bad)) == 2


def test_catches_a_missing_make_target_or_variable(checker, tmp_path):
    problems = problems_of(checker, tmp_path, "commands", "```bash\nmake no-such-target\n```\n")
    assert len(problems) == 1 and "no-such-target" in problems[0], problems
    problems = problems_of(checker, tmp_path, "commands", "Run `make train NO_SUCH_VARIABLE=1`.\n")
    assert len(problems) == 1 and "NO_SUCH_VARIABLE" in problems[0], problems
    # the variables reach the recipe: a bad override in TRAIN_ARGS is caught
    problems = problems_of(checker, tmp_path, "commands", 'Run `make train TRAIN_ARGS="model.not_a_key=1"`.\n')
    assert len(problems) == 1 and "model.not_a_key" in problems[0], problems


def test_catches_sweep_study_and_script_argument_errors(checker, tmp_path):
    text = (
        "```bash\n"
        "python src/sweep.py conf/sweep/no_such_sweep.yaml\n"
        "python src/sweep.py conf/sweep/demo.yaml --no-such-option\n"
        "python src/sweep.py conf/sweep/demo.yaml model.not_a_key=1\n"
        "python src/study.py no_such_study\n"
        "python src/study.py embedded --jobs two\n"
        "python benchmarks/no_such_bench.py\n"
        "python -m lfm.no_such_module\n"
        "python -m lfm.metrics features.npz --no-such-option\n"
        "```\n"
    )
    problems = problems_of(checker, tmp_path, "commands", text)
    assert [int(problem.split(":")[1]) for problem in problems] == list(range(2, 10)), "\n".join(problems)
    good = (
        "```bash\n"
        "python src/sweep.py conf/sweep/lfm_bayes.yaml --count N --jobs 2 debug=fast data.image_size=[64,32]\n"
        "python src/study.py full --executor slurm --partition gpu --time-min 240\n"
        "python -m lfm.metrics outputs/<eval run>/features.npz --rerank --k1 30 --json\n"
        "python src/study.py path/to/my_study.yaml\n"
        "```\n"
    )
    assert not problems_of(checker, tmp_path, "commands", good)


def test_catches_a_broken_relative_link(checker, tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "other.md").write_text("# Other page\n\n## A section\n")
    text = (
        "[ok](other.md) [ok](other.md#a-section) ![ok](other.md) [web](https://example.com)\n"
        "[broken](missing.md) and ![image](figures/missing.png) and [anchor](other.md#no-such-section)\n"
        "`[not a link](in_code.md)`\n"
    )
    problems = problems_of(checker, tmp_path, "links", text, name="docs/page.md")
    assert len(problems) == 3 and all(":2:" in problem for problem in problems), problems


def test_catches_a_nonexistent_file_path(checker, tmp_path):
    text = (
        "See `src/lfm/masking.py`, `conf/sweep/demo.yaml`, `tests/` and `outputs/x.csv`.\n"
        "See `src/lfm/no_such_file.py` and `docs/<name>.md`.\n\n"
        "```\nbenchmarks/no_such_bench.py   what it does\n```\n"
    )
    problems = problems_of(checker, tmp_path, "paths", text)
    assert len(problems) == 2, problems
    assert "doc.md:2:" in problems[0] and "no_such_file.py" in problems[0]
    assert "doc.md:5:" in problems[1] and "no_such_bench.py" in problems[1]


def test_catches_invalid_yaml_python_and_json(checker, tmp_path):
    text = (
        "```yaml\nprogram: src/train.py\ncommand: [${env}, x]\n```\n\n"
        "```yaml\ncommand: ['${env}', x]\n```\n\n"
        "```python\ndef broken(:\n    pass\n```\n\n"
        "```python\nresult = {'a': 1}\n```\n\n"
        '```json\n{"a": 1,}\n```\n\n'
        '```json\n"status": "finished", "seconds": 412.3\n```\n'
    )
    problems = problems_of(checker, tmp_path, "blocks", text)
    assert len(problems) == 3, problems
    assert "doc.md:3:" in problems[0] and "YAML" in problems[0]
    assert "doc.md:11:" in problems[1] and "compile" in problems[1]
    assert "doc.md:20:" in problems[2] and "JSON" in problems[2]


def test_a_yaml_sweep_file_must_load(checker, tmp_path):
    text = (
        "```yaml\nprogram: src/train.py\nmethod: grid\nparameters:\nmodel.lfm.p: {values: [0.1]}\n"
        "command: ['${env}', '${interpreter}', '${program}', '${args_no_hyphens}']\n```\n"
    )
    problems = problems_of(checker, tmp_path, "blocks", text)
    assert len(problems) == 1 and "load_sweep" in problems[0], problems


def test_catches_a_table_naming_a_missing_key(checker, tmp_path):
    text = (
        "| key | meaning |\n|---|---|\n"
        "| `model.lfm.p` | probability |\n"
        "| `callbacks.lfm.warmup_epochs` | only under callbacks=lfm_warmup |\n"
        "| `attack.eps` | eval only |\n"
        "| `lfm.data.market` | a module, not a key |\n"
        "| `model.lfm.no_such_knob` | missing |\n"
    )
    problems = problems_of(checker, tmp_path, "config_keys", text)
    assert len(problems) == 1 and "doc.md:7:" in problems[0] and "model.lfm.no_such_knob" in problems[0], problems


def test_catches_a_missing_key_or_option_in_an_override_span(checker, tmp_path):
    text = (
        "Set `data.val_ids=0`, `lfm=official regularizer=random_erasing`, `model.lfm=null`, `+foo.bar=1`,\n"
        "`trainer.num_nodes=N`, `hydra.run.dir=<out>/runs/<run id>`, `p=0.5`.\n"
        "Broken: `data.no_such_key=1`, `lfm=no_such_preset`, `model.lfm.after=[conv1,`.\n"
    )
    problems = problems_of(checker, tmp_path, "config_keys", text)
    assert len(problems) == 3 and all("doc.md:3:" in problem for problem in problems), problems


def test_catches_a_missing_python_name(checker, tmp_path):
    text = (
        "`lfm.masking.LocalFeatureMasking`, `lfm.analysis.results`, `lfm.metrics.evaluate_features(x)`.\n"
        "`lfm.masking.no_such_function` and `lfm.no_such_module`.\n\n"
        "```python\nfrom lfm.masking import LocalFeatureMasking, NoSuchThing\n```\n"
    )
    problems = problems_of(checker, tmp_path, "python_names", text)
    assert len(problems) == 3, problems
    assert "doc.md:2:" in problems[0] and "doc.md:2:" in problems[1] and "doc.md:5:" in problems[2]


def test_command_extraction(tmp_path):
    path = tmp_path / "doc.md"
    path.write_text(
        "Inline `make\nbench` across a line break; not a command: `src/train.py`.\n\n"
        "```console\n$ python src/train.py seed=1  # comment\noutput line\n```\n\n"
        "```\nsrc/train.py   a layout line, not a command\nmake test\n```\n\n"
        "```bash\n# a comment\nwandb sweep conf/sweep/demo.yaml && python src/sweep.py conf/sweep/demo.yaml\n```\n"
    )
    commands = [(command.line, command.text) for command in extract_commands(read_markdown(path))]
    assert commands == [
        (1, "make bench"),
        (5, "python src/train.py seed=1"),
        (11, "make test"),
        (16, "wandb sweep conf/sweep/demo.yaml && python src/sweep.py conf/sweep/demo.yaml"),
    ]
    assert strip_comment("python x.py 'a # b'  # c") == "python x.py 'a # b'"
    assert split_command("bench.py [--before REF] a=[1,2]") == ["bench.py", "--before", "REF", "a=[1,2]"]
