"""A study file (conf/study/<name>.yaml), checked, and the steps it expands into.

First the tuning: each candidate strength of a tuned method trains one model on the first domain with the
tuning seed and is scored on the validation identities (never the test split). The strength with the best
validation mAP becomes the method `<label>_tuned`; when the method's own (paper) strength wins, `<label>_tuned`
is the same runs as `<label>`. Then each (domain, method, seed) trains one model (`src/train.py`) and tests
its best checkpoint on every cross-domain dataset (`src/eval.py data=<target>`) and under attack
(`src/eval.py attack=...`). A step is done when its run directory holds metrics.json.
"""

from dataclasses import dataclass
from pathlib import Path

from lfm.errors import InputError
from lfm.project import CONF_DIR
from lfm.sweeps.spec import read_yaml

QUESTIONS = ("in_domain", "cross_domain", "robustness")
TRAIN, CROSS, ATTACK, TUNE = "train", "cross", "attack", "tune"
TUNED = "_tuned"  # suffix of the label of a method at its tuned strength


@dataclass(frozen=True)
class Domain:
    train: str  # data config the models train (and are tested in-domain) on
    cross: tuple[str, ...]  # data configs they are also tested on
    methods: tuple[str, ...]  # the methods trained on it
    attacked: tuple[str, ...]  # the methods also tested under attack
    seeds: tuple[int, ...] | None = None  # the seeds run on it (None: each method's seeds)


@dataclass(frozen=True)
class Tuning:
    """Candidate strengths per method, each one training run with `seed`, chosen by validation mAP."""

    seed: int
    train_overrides: tuple[str, ...]  # after the study's train_overrides, for the tuning runs only
    candidates: dict[str, tuple[tuple[str, ...], ...]]  # method -> overrides of each other strength
    seeds: tuple[int, ...] | None = None  # the comparison seeds of the tuned methods (None: their method's)


@dataclass(frozen=True)
class Claim:
    text: str
    question: str  # in_domain | cross_domain | robustness
    method: str
    reference: str


@dataclass(frozen=True)
class StudySpec:
    path: Path
    name: str
    seeds: tuple[int, ...]
    methods: dict[str, tuple[str, ...]]  # method label -> src/train.py overrides (tuned labels: their method's)
    method_seeds: dict[str, tuple[int, ...]]  # method label -> its seeds (default: `seeds`)
    baseline: str
    domains: tuple[Domain, ...]
    train_overrides: tuple[str, ...]  # every training run
    eval_overrides: tuple[str, ...]  # every src/eval.py run
    cross_overrides: tuple[str, ...]  # the cross-domain evaluations (settings of the target data)
    attack_overrides: tuple[str, ...]  # the attack evaluation (src/eval.py), empty: no attack
    claims: tuple[Claim, ...]
    tuning: Tuning | None = None
    description: str = ""

    def candidates(self, method: str) -> tuple[tuple[str, ...], ...]:
        """A tuned method's strengths: its own (index 0, no extra overrides) then the other candidates."""
        return ((), *self.tuning.candidates[method]) if self.tuning and method in self.tuning.candidates else ()


@dataclass(frozen=True)
class Step:
    kind: str  # train | cross | attack
    domain: str
    method: str
    seed: int
    target: str  # the test data: the training domain, or the cross-domain dataset

    candidate: int = 0  # tuning steps: the index of the strength in `StudySpec.candidates`

    @property
    def key(self) -> str:
        """The step's run directory relative to the study's runs/ folder."""
        if self.kind == TUNE:
            return f"{TUNE}/{self.method}/candidate{self.candidate}"
        leaf = f"{CROSS}_{self.target}" if self.kind == CROSS else self.kind
        return f"{self.domain}/{self.method}/seed{self.seed}/{leaf}"

    @property
    def train_key(self) -> str:
        return f"{self.domain}/{self.method}/seed{self.seed}/{TRAIN}"


def resolve_study_file(name_or_path: str) -> Path:
    """A study by name (conf/study/<name>.yaml) or by path."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        return path
    return CONF_DIR / "study" / f"{name_or_path}.yaml"


def _strings(path: Path, key: str, value) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise InputError(f"{path}: {key} must be a list of Hydra overrides (strings), got {value!r}")
    return tuple(value)


def _data_config(path: Path, key: str, name) -> str:
    if not isinstance(name, str) or not (CONF_DIR / "data" / f"{name}.yaml").is_file():
        choices = sorted(p.stem for p in (CONF_DIR / "data").glob("*.yaml"))
        raise InputError(f"{path}: {key}={name!r} is not a data config; choose from {choices}")
    return name


def _seeds(path: Path, key: str, seeds) -> tuple[int, ...]:
    if (
        not isinstance(seeds, list | tuple)
        or not seeds
        or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds)
        or len(set(seeds)) != len(seeds)
    ):
        raise InputError(f"{path}: {key} must be a non-empty list of distinct integers, got {seeds!r}")
    return tuple(seeds)


def _labels(path: Path, key: str, labels, allowed) -> tuple[str, ...]:
    if not isinstance(labels, list | tuple) or not all(label in allowed for label in labels):
        raise InputError(f"{path}: {key} must be a list of methods from {list(allowed)}, got {labels!r}")
    return tuple(labels)


def _tuning(path: Path, raw, methods: dict) -> Tuning | None:
    if raw is None:
        return None
    if not isinstance(raw, dict) or not isinstance(raw.get("candidates"), dict) or not raw["candidates"]:
        raise InputError(
            f"{path}: tuning must be {{seed: <int>, train_overrides: [...], candidates: {{<method>: [[overrides], ...]}}, "
            "seeds: [...]}"
        )
    seed = raw.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise InputError(f"{path}: tuning.seed must be an integer, got {seed!r}")
    candidates = {}
    for method, strengths in raw["candidates"].items():
        key = f"tuning.candidates.{method}"
        if method not in methods:
            raise InputError(f"{path}: {key}: {method!r} is not one of the methods {list(methods)}")
        if not isinstance(strengths, list) or not strengths:
            raise InputError(f"{path}: {key} must be a list of override lists (the strengths besides the method's own)")
        candidates[method] = tuple(_strings(path, f"{key}[{i}]", overrides) for i, overrides in enumerate(strengths))
    seeds = _seeds(path, "tuning.seeds", raw["seeds"]) if "seeds" in raw else None
    return Tuning(seed, _strings(path, "tuning.train_overrides", raw.get("train_overrides")), candidates, seeds)


def load_study(name_or_path: str) -> StudySpec:
    """Read and check a study file; an InputError names the file, the key and the fix."""
    path = resolve_study_file(name_or_path)
    if not path.is_file():
        choices = sorted(p.stem for p in (CONF_DIR / "study").glob("*.yaml"))
        raise InputError(f"study file {path} does not exist; pass one of {choices} or a path to a study .yaml")
    raw = read_yaml(path, "study file", resolve=True)
    if not isinstance(raw, dict):
        raise InputError(f"{path} must be a mapping with keys name, seeds, methods, baseline, domains")
    missing = [key for key in ("name", "seeds", "methods", "baseline", "domains") if key not in raw]
    if missing:
        raise InputError(f"{path}: missing key(s) {missing}; see conf/study/embedded.yaml for the layout")
    name = raw["name"]
    if not isinstance(name, str) or not name or "/" in name:
        raise InputError(f"{path}: name must be a non-empty string without '/', got {name!r}")
    seeds = _seeds(path, "seeds", raw["seeds"])
    methods_raw = raw["methods"]
    if not isinstance(methods_raw, dict) or not methods_raw:
        raise InputError(f"{path}: methods must map a label to a list of src/train.py overrides")
    methods, method_seeds = {}, {}
    for label, entry in methods_raw.items():
        label = str(label)
        if isinstance(entry, dict):
            if set(entry) - {"overrides", "seeds"}:
                raise InputError(f"{path}: methods.{label} takes the keys overrides and seeds, got {sorted(entry)}")
            method_seeds[label] = _seeds(path, f"methods.{label}.seeds", entry.get("seeds", seeds))
            entry = entry.get("overrides")
        methods[label] = _strings(path, f"methods.{label}", entry)
        method_seeds.setdefault(label, tuple(seeds))
        if label.endswith(TUNED):
            raise InputError(f"{path}: methods.{label}: labels ending in {TUNED} name tuned methods; rename it")
    baseline = raw["baseline"]
    if baseline not in methods:
        raise InputError(f"{path}: baseline={baseline!r} is not one of the methods {list(methods)}")
    tuning = _tuning(path, raw.get("tuning"), methods)
    for method in tuning.candidates if tuning else ():
        methods[method + TUNED] = methods[method]
        method_seeds[method + TUNED] = tuning.seeds or method_seeds[method]
    domains_raw = raw["domains"]
    if not isinstance(domains_raw, list) or not domains_raw or not all(isinstance(d, dict) for d in domains_raw):
        raise InputError(f"{path}: domains must be a list of {{train: <data config>, cross: [<data config>, ...]}}")
    domains = []
    for i, d in enumerate(domains_raw):
        trained = _labels(path, f"domains[{i}].methods", d.get("methods", list(methods)), methods)
        attacked = _labels(path, f"domains[{i}].attacked", d.get("attacked", list(trained)), trained)
        domains.append(
            Domain(
                _data_config(path, f"domains[{i}].train", d.get("train")),
                tuple(_data_config(path, f"domains[{i}].cross", c) for c in d.get("cross") or ()),
                trained,
                attacked,
                _seeds(path, f"domains[{i}].seeds", d["seeds"]) if "seeds" in d else None,
            )
        )
    claims = []
    for i, claim in enumerate(raw.get("claims") or []):
        where = f"claims[{i}]"
        if not isinstance(claim, dict) or not {"text", "question", "method", "reference"} <= set(claim):
            raise InputError(f"{path}: {where} must have text, question, method and reference")
        if claim["question"] not in QUESTIONS:
            raise InputError(f"{path}: {where}.question={claim['question']!r}; choose from {list(QUESTIONS)}")
        for key in ("method", "reference"):
            if claim[key] not in methods:
                raise InputError(f"{path}: {where}.{key}={claim[key]!r} is not one of the methods {list(methods)}")
        claims.append(Claim(str(claim["text"]), claim["question"], claim["method"], claim["reference"]))
    return StudySpec(
        path=path,
        name=name,
        seeds=seeds,
        methods=methods,
        method_seeds=method_seeds,
        baseline=baseline,
        domains=tuple(domains),
        train_overrides=_strings(path, "train_overrides", raw.get("train_overrides")),
        eval_overrides=_strings(path, "eval_overrides", raw.get("eval_overrides")),
        cross_overrides=_strings(path, "cross_overrides", raw.get("cross_overrides")),
        attack_overrides=_strings(path, "attack_overrides", raw.get("attack_overrides")),
        claims=tuple(claims),
        tuning=tuning,
        description=str(raw.get("description") or ""),
    )


def tuning_steps(spec: StudySpec) -> list[Step]:
    """One training run per candidate strength of each tuned method, on the first domain."""
    if spec.tuning is None:
        return []
    domain = spec.domains[0].train
    return [
        Step(TUNE, domain, method, spec.tuning.seed, domain, candidate)
        for method in spec.tuning.candidates
        for candidate in range(len(spec.candidates(method)))
    ]


def study_steps(spec: StudySpec, same_as_paper: frozenset[str] = frozenset()) -> list[Step]:
    """Every comparison step in run order: seed by seed (a stopped study has whole seeds done), method by
    method. Tuned methods in `same_as_paper` (their own strength won the tuning) have no steps of their own."""
    steps = []
    for domain in spec.domains:
        seeds = {seed for method in domain.methods for seed in spec.method_seeds[method]}
        for seed in sorted(seeds if domain.seeds is None else seeds & set(domain.seeds)):
            for method in domain.methods:
                if seed not in spec.method_seeds[method] or method in same_as_paper:
                    continue
                steps.append(Step(TRAIN, domain.train, method, seed, domain.train))
                steps.extend(Step(CROSS, domain.train, method, seed, target) for target in domain.cross)
                if spec.attack_overrides and method in domain.attacked:
                    steps.append(Step(ATTACK, domain.train, method, seed, domain.train))
    return steps
