"""A study file (conf/study/<name>.yaml), checked, and the steps it expands into.

Each (domain, method, seed) trains one model (`src/train.py`), then tests its best checkpoint
on every cross-domain dataset (`src/eval.py data=<target>`) and under attack
(`src/eval.py attack=...`). A step is done when its run directory holds metrics.json.
"""

from dataclasses import dataclass
from pathlib import Path

from lfm.errors import InputError
from lfm.project import CONF_DIR
from lfm.sweeps.spec import read_yaml

QUESTIONS = ("in_domain", "cross_domain", "robustness")
TRAIN, CROSS, ATTACK = "train", "cross", "attack"


@dataclass(frozen=True)
class Domain:
    train: str  # data config the models train (and are tested in-domain) on
    cross: tuple[str, ...]  # data configs they are also tested on


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
    methods: dict[str, tuple[str, ...]]  # method label -> src/train.py overrides
    baseline: str
    domains: tuple[Domain, ...]
    train_overrides: tuple[str, ...]  # every training run
    eval_overrides: tuple[str, ...]  # every src/eval.py run
    cross_overrides: tuple[str, ...]  # the cross-domain evaluations (settings of the target data)
    attack_overrides: tuple[str, ...]  # the attack evaluation (src/eval.py), empty: no attack
    claims: tuple[Claim, ...]
    description: str = ""


@dataclass(frozen=True)
class Step:
    kind: str  # train | cross | attack
    domain: str
    method: str
    seed: int
    target: str  # the test data: the training domain, or the cross-domain dataset

    @property
    def key(self) -> str:
        """The step's run directory relative to the study's runs/ folder."""
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
    seeds = raw["seeds"]
    if (
        not isinstance(seeds, list)
        or not seeds
        or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds)
        or len(set(seeds)) != len(seeds)
    ):
        raise InputError(f"{path}: seeds must be a non-empty list of distinct integers, got {seeds!r}")
    methods = raw["methods"]
    if not isinstance(methods, dict) or not methods:
        raise InputError(f"{path}: methods must map a label to a list of src/train.py overrides")
    methods = {str(label): _strings(path, f"methods.{label}", overrides) for label, overrides in methods.items()}
    baseline = raw["baseline"]
    if baseline not in methods:
        raise InputError(f"{path}: baseline={baseline!r} is not one of the methods {list(methods)}")
    domains_raw = raw["domains"]
    if not isinstance(domains_raw, list) or not domains_raw or not all(isinstance(d, dict) for d in domains_raw):
        raise InputError(f"{path}: domains must be a list of {{train: <data config>, cross: [<data config>, ...]}}")
    domains = tuple(
        Domain(
            _data_config(path, f"domains[{i}].train", d.get("train")),
            tuple(_data_config(path, f"domains[{i}].cross", c) for c in d.get("cross") or ()),
        )
        for i, d in enumerate(domains_raw)
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
        seeds=tuple(seeds),
        methods=methods,
        baseline=baseline,
        domains=domains,
        train_overrides=_strings(path, "train_overrides", raw.get("train_overrides")),
        eval_overrides=_strings(path, "eval_overrides", raw.get("eval_overrides")),
        cross_overrides=_strings(path, "cross_overrides", raw.get("cross_overrides")),
        attack_overrides=_strings(path, "attack_overrides", raw.get("attack_overrides")),
        claims=tuple(claims),
        description=str(raw.get("description") or ""),
    )


def study_steps(spec: StudySpec) -> list[Step]:
    """Every step in run order: seed by seed (a stopped study has whole seeds done), method by method."""
    steps = []
    for domain in spec.domains:
        for seed in spec.seeds:
            for method in spec.methods:
                steps.append(Step(TRAIN, domain.train, method, seed, domain.train))
                steps.extend(Step(CROSS, domain.train, method, seed, target) for target in domain.cross)
                if spec.attack_overrides:
                    steps.append(Step(ATTACK, domain.train, method, seed, domain.train))
    return steps
