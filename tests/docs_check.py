"""Checks that keep the Markdown documentation true to the code (used by tests/test_docs.py).

Every check takes a parsed Markdown file and returns problems, one string each,
"FILE:LINE: what is wrong; how to fix it". Nothing here starts a process: Hydra configs are
composed in this process, argparse parsers are rebuilt from the scripts' source, Python names
are looked up in the source files.

The rules:

- Commands (`check_commands`). Command lines are taken from ```bash / sh / shell / zsh blocks
  (every line), ```console blocks (the `$ ` lines), untagged blocks (the lines that start with
  `python`, `.venv/bin/python` or `make`) and inline code spans (those that start so, or that are a
  repository script followed by arguments, e.g. `src/eval.py ... trainer=ddp`). Lines ending in
  a backslash are joined, a leading `$ ` prompt, leading `VAR=value` environment settings and a
  trailing `# comment` are dropped, `[--flag VALUE]` brackets (optional parts) are removed.
  * A Hydra script (one with `@hydra.main`, i.e. src/train.py, src/eval.py): its flags are Hydra's
    (`-m`, `--cfg job`, `--help`, `-cn NAME`, ...) and every override is composed against the
    script's primary config (`hydra.compose`, with the hydra node, so `hydra.*` overrides count).
    Under `-m` a sweep (`a=1,2`) composes with each of its values (the others at their first).
  * src/sweep.py: the options parse with the script's own argparse parser, the sweep file loads
    with `lfm.sweeps.spec.load_sweep`, and the overrides after it compose with the file's fixed
    command overrides. src/study.py: the options parse and the study loads (`load_study`).
  * Any other script, or `python -m lfm.<module>`: the file exists (looked up under src/ without
    importing the package; a module run with -m needs a `__main__` guard, a package a
    `__main__.py`) and, if it uses argparse, the arguments parse. `python -m <other module>`: the
    module is installed (importlib.util.find_spec).
  * `make TARGET [VAR=value ...]`: the target is in the Makefile, each VAR is used by the
    Makefile, and the target's recipe, expanded with those variables, passes these same checks.
  * Placeholders: a token holding `<`, `>`, `...`, `path/to`, or a bare upper-case word (`N`,
    `REF`) is a placeholder. An override whose key holds one is skipped; one whose value holds one
    is composed with a plain string value instead (a group choice such as `data=<dataset>` is
    skipped); argparse then checks flags and their arity but not types or choices; a positional
    file or study that is a placeholder is not loaded.
- Links (`check_links`): every relative `[text](target)`, `![alt](target)`, reference
  definition and HTML src/href resolves to a file or folder relative to the Markdown file;
  `#anchor` (in this file or another .md file) names a heading (GitHub's slugs). http(s),
  mailto and other schemes are skipped.
- Paths (`check_paths`): every repository path written in inline code or in a code block,
  i.e. a token starting with src/, conf/, docs/, benchmarks/, notebooks/ or tests/ that has a
  file extension or ends in /, exists. Tokens holding `<`, `*`, `{`, `$` or `...` are skipped.
- Config keys (`check_config_keys`):
  * an inline-code table cell that is a dotted key (`model.lfm.p`, `data.image_size`) whose first
    segment is a top-level key of the composed train or eval config must exist;
  * an inline code span made only of overrides (`data.val_ids=0`, `lfm=paper
    regularizer=random_erasing`, `model.lfm=null`), anywhere in the text, whose first key segment
    is a top-level key or a config group must parse as Hydra overrides, name an existing key
    (`+key=` adds a key and is not checked) or an existing group option (conf/<group>/<option>.yaml).
  "Exists" means: in the train config composed with experiment=lfm_resnet18_synthetic or in the
  eval config (both with the hydra node), or set by an option file of a config group, placed at
  its package (its `# @package` header, else the group's path; `/group@package: option` entries
  of its defaults list included), so `callbacks.lfm.warmup_epochs` (callbacks=lfm_warmup) and
  `hydra.launcher.partition` (hydra/launcher=slurm) count.
  Table cells holding `<`, `*` or `...`, and file names (`model.py`), are skipped; in an
  override span a placeholder value is replaced as on a command line.
- Blocks (`check_blocks`): ```yaml / yml blocks load with yaml.safe_load (and a block that is a
  sweep file or a study file also loads with the project's loader); ```python / py blocks compile;
  ```json blocks parse as JSON, or as the members of an object (a fragment such as
  `"status": "finished", "seconds": 412.3`).
- Python names (`check_python_names`): `lfm.<module>[.<name>]` in inline code, and
  `from lfm... import ...` / `import lfm...` in Python blocks, name a module under src/lfm and a
  name defined (or imported) at the top level of it.
"""

from __future__ import annotations

import argparse
import ast
import builtins
import contextlib
import copy
import importlib
import importlib.util
import io
import json
import re
import shlex
import tempfile
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import yaml

SHELL_LANGS = {"bash", "sh", "shell", "zsh"}
CONSOLE_LANGS = {"console", "shell-session", "sh-session"}
YAML_LANGS = {"yaml", "yml"}
PYTHON_LANGS = {"python", "py", "python3"}
JSON_LANGS = {"json"}
PATH_PREFIXES = ("src/", "conf/", "docs/", "benchmarks/", "notebooks/", "tests/")
PYTHONS = ("python", "python3", ".venv/bin/python", ".venv/bin/python3")
FILE_SUFFIXES = {
    "py",
    "yaml",
    "yml",
    "json",
    "md",
    "csv",
    "png",
    "jpg",
    "ckpt",
    "pth",
    "npz",
    "txt",
    "ipynb",
    "safetensors",
    "db",
    "log",
    "toml",
    "cfg",
}
HYDRA_FLAGS_WITH_VALUE = {
    "-c",
    "--cfg",
    "-p",
    "--package",
    "-cn",
    "--config-name",
    "-cp",
    "--config-path",
    "-cd",
    "--config-dir",
    "--experimental-rerun",
}
HYDRA_FLAGS = {
    "-m",
    "--multirun",
    "-r",
    "--run",
    "-h",
    "--help",
    "--hydra-help",
    "--version",
    "--resolve",
    "-sc",
    "--shell-completion",
    "-i",
    "--info",
}
INFO_CHOICES = {"all", "config", "defaults", "defaults-tree", "plugins", "searchpath"}
PARSE_METHODS = {"parse_args", "parse_intermixed_args", "parse_known_args", "parse_known_intermixed_args"}
DOTTED_KEY = re.compile(r"^[A-Za-z_][\w-]*(\.[\w-]+)+$")
OVERRIDE = re.compile(r"^(\+\+|\+|~)?([A-Za-z_][\w-]*(?:[./][\w-]+)*)(@[\w.]+)?=(.*)$")
PLACEHOLDER = re.compile(r"[<>]|\.\.\.|…|path/to|^\[?[A-Z][A-Z0-9_]*\]?$")
LINK = re.compile(r"(!?)\[((?:[^\[\]]|\[[^\]]*\])*)\]\(\s*<?([^)\s>]*)>?(?:\s+(?:\"[^\"]*\"|'[^']*'))?\s*\)")
REFERENCE_DEFINITION = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s.*)?$")
HTML_LINK = re.compile(r"<(?:img|a)\b[^>]*\b(?:src|href)=\"([^\"]+)\"", re.IGNORECASE)
FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})\s*([^\s`{]*)")


# ----------------------------------------------------------------------------------------------
# Markdown: fenced blocks, inline code spans, prose


@dataclass(frozen=True)
class Block:
    """A fenced code block: its info word, the line of its first content line, its text."""

    lang: str
    line: int
    text: str

    @property
    def lines(self) -> list[tuple[int, str]]:
        return [(self.line + i, text) for i, text in enumerate(self.text.split("\n"))]


@dataclass(frozen=True)
class Span:
    """An inline code span, its text on one line, and whether it sits in a table row."""

    line: int
    text: str
    in_table: bool


@dataclass
class Markdown:
    path: Path
    name: str  # the path shown in problems (relative to the repository when inside it)
    lines: list[str]
    blocks: list[Block] = field(default_factory=list)
    spans: list[Span] = field(default_factory=list)
    # (line, text) of the prose outside fenced blocks, with code spans blanked out
    prose: list[tuple[int, str]] = field(default_factory=list)

    def where(self, line: int) -> str:
        return f"{self.name}:{line}"


def read_markdown(path: Path, root: Path | None = None) -> Markdown:
    path = Path(path)
    try:
        name = str(path.resolve().relative_to(Path(root).resolve())) if root else str(path)
    except ValueError:
        name = str(path)
    lines = path.read_text(encoding="utf-8").split("\n")
    md = Markdown(path=path, name=name, lines=lines)
    outside = list(lines)  # fenced lines blanked
    fence = None
    for index, text in enumerate(lines):
        if fence is None:
            match = FENCE.match(text)
            if match:
                fence = (match.group(2), match.group(3).lower(), index, len(match.group(1)))
                outside[index] = ""
            continue
        outside[index] = ""
        marker, lang, start, indent = fence
        stripped = text.strip()
        if stripped.startswith(marker[0] * len(marker)) and not stripped.strip(marker[0]):
            body = [_dedent(line, indent) for line in lines[start + 1 : index]]
            md.blocks.append(Block(lang=lang, line=start + 2, text="\n".join(body)))
            fence = None
    if fence is not None:  # unclosed: the rest of the file is the block
        marker, lang, start, _ = fence
        md.blocks.append(Block(lang=lang, line=start + 2, text="\n".join(lines[start + 1 :])))
    md.spans, md.prose = _code_spans(outside)
    return md


def _dedent(line: str, indent: int) -> str:
    """A fenced block's line without the fence's own indentation (a block inside a list item)."""
    if not indent or not line[:indent].strip():
        return line[indent:]
    return line.lstrip()


def _code_spans(lines: list[str]) -> tuple[list[Span], list[tuple[int, str]]]:
    """Inline code spans (which may run over line breaks inside a paragraph) and the prose without them."""
    spans: list[Span] = []
    blanked = list(lines)
    paragraph: list[int] = []

    def flush() -> None:
        if not paragraph:
            return
        text = "\n".join(lines[i] for i in paragraph)
        starts = [0]
        for i in paragraph[:-1]:
            starts.append(starts[-1] + len(lines[i]) + 1)
        chars = list(text)
        position = 0
        while True:
            opening = re.compile(r"(?<!`)(`+)(?!`)").search(text, position)
            if not opening:
                break
            ticks = opening.group(1)
            closing = re.compile(rf"(?<!`){ticks}(?!`)").search(text, opening.end())
            if not closing:
                position = opening.end()
                continue
            content = text[opening.end() : closing.start()].replace("\n", " ")
            if content.startswith(" ") and content.endswith(" ") and content.strip():
                content = content[1:-1]
            row = max(k for k, start in enumerate(starts) if start <= opening.start())
            line_index = paragraph[row]
            spans.append(Span(line_index + 1, content, lines[line_index].lstrip().startswith("|")))
            for k in range(opening.start(), closing.end()):
                if chars[k] != "\n":
                    chars[k] = " "
            position = closing.end()
        for i, part in zip(paragraph, "".join(chars).split("\n")):
            blanked[i] = part
        paragraph.clear()

    for index, text in enumerate(lines):
        if text.strip():
            paragraph.append(index)
        else:
            flush()
    flush()
    return spans, [(i + 1, text) for i, text in enumerate(blanked) if text.strip()]


# ----------------------------------------------------------------------------------------------
# Commands: extraction and tokens


@dataclass(frozen=True)
class Command:
    line: int
    text: str


def strip_comment(text: str) -> str:
    """The line without a trailing shell comment (a # at a word start, outside quotes)."""
    quote = None
    for i, char in enumerate(text):
        if quote:
            if char == quote:
                quote = None
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or text[i - 1].isspace()):
            return text[:i].rstrip()
    return text.rstrip()


def _logical_lines(block: Block) -> list[tuple[int, str]]:
    """The block's lines with backslash continuations joined, each with the line it starts on."""
    joined: list[tuple[int, str]] = []
    start, buffer = 0, None
    for number, text in block.lines:
        if buffer is None:
            start, buffer = number, ""
        content = text.rstrip()
        if content.endswith("\\"):
            buffer += content[:-1].strip() + " "
            continue
        joined.append((start, buffer + content.strip()))
        buffer = None
    if buffer is not None:
        joined.append((start, buffer.strip()))
    return joined


def _starts_like_command(text: str) -> bool:
    first = text.split(maxsplit=1)[0] if text.split() else ""
    return first in PYTHONS or first == "make"


def _is_script_call(text: str) -> bool:
    """An inline span such as `src/eval.py ... trainer=ddp`: a repository script and arguments."""
    parts = text.split()
    return len(parts) > 1 and parts[0].endswith(".py") and parts[0].startswith(PATH_PREFIXES)


def extract_commands(md: Markdown) -> list[Command]:
    commands = []
    for block in md.blocks:
        if block.lang not in SHELL_LANGS | CONSOLE_LANGS | {""}:
            continue
        for number, text in _logical_lines(block):
            text = text.strip()
            if block.lang in CONSOLE_LANGS:
                if not text.startswith("$ "):
                    continue
            text = strip_comment(text.removeprefix("$ ").strip())
            if not text or (block.lang == "" and not _starts_like_command(text)):
                continue
            commands.append(Command(number, text))
    for span in md.spans:
        text = strip_comment(span.text.strip().removeprefix("$ ").strip())
        if text and (_starts_like_command(text) or _is_script_call(text)):
            commands.append(Command(span.line, text))
    return sorted(commands, key=lambda command: command.line)


def split_command(text: str) -> list[str]:
    """The command's words; a placeholder with spaces (`<sweep id>`) stays one word, [optional] brackets go."""
    text = re.sub(r"<[^<>]*>", lambda match: match.group(0).replace(" ", "_"), text)
    try:
        tokens = shlex.split(text, comments=False, posix=True)
    except ValueError:
        tokens = text.split()
    result = []
    for token in tokens:
        if token.startswith("[") and not token.startswith("[]"):
            token = token[1:]
        if token.endswith("]") and "[" not in token:
            token = token[:-1]
        if token:
            result.append(token)
    return result


def is_placeholder(token: str) -> bool:
    return bool(PLACEHOLDER.search(token))


# ----------------------------------------------------------------------------------------------
# Scripts: Hydra entry points and argparse parsers, read from their source


@dataclass(frozen=True)
class HydraMain:
    config_dir: Path
    config_name: str
    version_base: str | None


@dataclass
class ScriptInfo:
    path: Path
    hydra: HydraMain | None
    parser: argparse.ArgumentParser | None
    parse_method: str
    problem: str | None  # why the parser could not be rebuilt
    has_main_guard: bool


def _literal(node: ast.AST):
    try:
        return ast.literal_eval(node)
    except Exception:  # not a literal
        return None


def _hydra_main(tree: ast.Module, path: Path) -> HydraMain | None:
    for node in ast.walk(tree):
        if not isinstance(node, ast.FunctionDef):
            continue
        for decorator in node.decorator_list:
            if not isinstance(decorator, ast.Call):
                continue
            func = decorator.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            owner = getattr(func.value, "id", "") if isinstance(func, ast.Attribute) else ""
            if name != "main" or owner not in ("hydra", ""):
                continue
            keywords = {kw.arg: _literal(kw.value) for kw in decorator.keywords}
            config_path = keywords.get("config_path")
            if config_path is None:
                continue
            return HydraMain(
                config_dir=(path.parent / config_path).resolve(),
                config_name=keywords.get("config_name") or "config",
                version_base=keywords.get("version_base"),
            )
    return None


def _imports(tree: ast.Module, package: str | None) -> dict[str, tuple[str, str | None]]:
    """Name -> (module, attribute) for the module-level imports."""
    found = {}
    for node in tree.body:
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    found[alias.asname] = (alias.name, None)
                else:
                    top = alias.name.split(".")[0]
                    found[top] = (top, None)
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level and package:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                module = ".".join([*base, module] if module else base)
            for alias in node.names:
                found[alias.asname or alias.name] = (module, alias.name)
    return found


def _names_used(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}


def _parse_call(node: ast.AST, parsers: set[str]) -> str | None:
    for sub in ast.walk(node):
        if (
            isinstance(sub, ast.Call)
            and isinstance(sub.func, ast.Attribute)
            and sub.func.attr in PARSE_METHODS
            and isinstance(sub.func.value, ast.Name)
            and sub.func.value.id in parsers
        ):
            return sub.func.attr
    return None


def _makes_parser(node: ast.AST) -> bool:
    for sub in ast.walk(node):
        if isinstance(sub, ast.Call):
            func = sub.func
            if (isinstance(func, ast.Attribute) and func.attr == "ArgumentParser") or (
                isinstance(func, ast.Name) and func.id == "ArgumentParser"
            ):
                return True
    return False


def rebuild_parser(path: Path, tree: ast.Module, package: str | None) -> tuple:
    """The script's argparse parser, rebuilt by running only the statements that build it.

    Returns (parser, parse method, problem). The statements between `ArgumentParser(...)` and the
    parse call that use the parser run with the script's imports (imported on demand); an
    add_argument keyword that cannot be evaluated (a name defined elsewhere in the script) is left
    out, so its flags and arity are still checked.
    """
    holder = None
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.If) and _makes_parser(node):
            holder = node
            break
    if holder is None:
        return None, "parse_args", None
    imports = _imports(tree, package)
    namespace: dict = {"__doc__": ast.get_docstring(tree, clean=False), "argparse": argparse, "Path": Path}
    parsers: set[str] = set()
    main_parser = None

    def resolve(names: set[str]) -> None:
        for name in names - namespace.keys():
            if hasattr(builtins, name) or name not in imports:
                continue
            module, attribute = imports[name]
            try:
                imported = importlib.import_module(module)
                namespace[name] = getattr(imported, attribute) if attribute else imported
            except Exception:  # a module that cannot be imported here: leave the name out
                continue

    def evaluate(node: ast.AST):
        resolve(_names_used(node))
        return eval(compile(ast.Expression(node), str(path), "eval"), namespace)

    for statement in holder.body:
        method = _parse_call(statement, parsers)
        if method and main_parser:
            parser = namespace[main_parser]
            if path.name != "__main__.py":
                parser.prog = path.name
            return parser, method, None
        uses_parser = bool(_names_used(statement) & parsers)
        if not (_makes_parser(statement) or uses_parser):
            continue
        call = statement.value if isinstance(statement, ast.Expr | ast.Assign) else None
        try:
            if isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute) and uses_parser:
                func = evaluate(call.func)
                args = [evaluate(arg) for arg in call.args]
                kwargs = {}
                for keyword in call.keywords:
                    with contextlib.suppress(Exception):
                        kwargs[keyword.arg] = evaluate(keyword.value)
                value = func(*args, **kwargs)
            else:
                resolve(_names_used(statement))
                exec(compile(ast.Module([statement], []), str(path), "exec"), namespace)
                value = None
        except Exception as error:
            return (
                None,
                "parse_args",
                f"could not rebuild the argparse parser of {path.name} (line {statement.lineno}: {error!r})",
            )
        if isinstance(statement, ast.Assign) and len(statement.targets) == 1:
            target = statement.targets[0]
            if isinstance(target, ast.Name):
                if value is not None:
                    namespace[target.id] = value
                parsers.add(target.id)
                if main_parser is None and _makes_parser(statement):
                    main_parser = target.id
    if main_parser:
        return namespace[main_parser], "parse_args", None
    return None, "parse_args", None


def parse_arguments(info: ScriptInfo, args: list[str]) -> tuple[argparse.Namespace | None, str | None]:
    """Parse args with the script's parser: (namespace, None) or (None, argparse's error)."""
    parser = info.parser
    if any(is_placeholder(arg) for arg in args):
        parser = copy.deepcopy(parser)
        for action in parser._actions:
            action.type = None
            action.choices = None
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            result = getattr(parser, info.parse_method)(args)
    except SystemExit as exit_:
        if exit_.code in (0, None):  # --help
            return argparse.Namespace(), None
        lines = [line for line in stderr.getvalue().strip().splitlines() if line.strip()]
        return None, lines[-1] if lines else f"exit code {exit_.code}"
    if isinstance(result, tuple):
        result = result[0]
    return result, None


# ----------------------------------------------------------------------------------------------
# The Makefile


@dataclass
class Makefile:
    variables: dict[str, str]
    recipes: dict[str, list[str]]
    used: set[str]

    @classmethod
    def read(cls, path: Path) -> Makefile:
        variables: dict[str, str] = {}
        recipes: dict[str, list[str]] = {}
        text = path.read_text() if path.is_file() else ""
        current: list[str] | None = None
        for line in text.split("\n"):
            if line.startswith("\t"):
                if current is not None:
                    current.append(line[1:])
                continue
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            current = None
            assignment = re.match(r"^(\.?[A-Za-z_][A-Za-z0-9_]*)\s*(\?=|:=|::=|\+=|=)\s*(.*)$", line)
            if assignment:
                name, operator, value = assignment.groups()
                if operator == "?=":
                    variables.setdefault(name, value.strip())
                elif operator == "+=":
                    variables[name] = (variables.get(name, "") + " " + value.strip()).strip()
                else:
                    variables[name] = value.strip()
                continue
            rule = re.match(r"^([^:=#\t][^:=#]*?)\s*::?(?!=)(.*)$", line)
            if rule:
                current = []
                for target in rule.group(1).split():
                    recipes.setdefault(target, current)
        used = set(re.findall(r"\$[({]([A-Za-z_][A-Za-z0-9_]*)[)}]", text))
        return cls(variables, recipes, used)

    @property
    def default_goal(self) -> str:
        return self.variables.get(".DEFAULT_GOAL") or next((t for t in self.recipes if not t.startswith(".")), "")

    def expand(self, text: str, values: dict[str, str], depth: int = 0) -> str:
        if depth > 10:
            return text
        merged = {**self.variables, **values, "MAKE": "make"}

        def replace(match: re.Match) -> str:
            return self.expand(merged.get(match.group(1), ""), values, depth + 1)

        expanded = re.sub(r"\$[({]([A-Za-z_][A-Za-z0-9_]*)[)}]", replace, text)
        if expanded != text and re.search(r"\$[({]", expanded):  # a computed name such as $(ARGS_$(NAME))
            return self.expand(expanded, values, depth + 1)
        return expanded.replace("$$", "$")


# ----------------------------------------------------------------------------------------------
# The checker


class DocsChecker:
    """Checks Markdown files against the repository at `root` (configs, scripts, Makefile, package)."""

    def __init__(self, root: Path):
        self.root = Path(root).resolve()
        self.conf = self.root / "conf"
        self._scripts: dict[Path, ScriptInfo] = {}
        self._compositions: dict[tuple, object] = {}

    # -- files ------------------------------------------------------------------------------------

    def read(self, path: Path) -> Markdown:
        return read_markdown(path, self.root)

    @cached_property
    def makefile(self) -> Makefile:
        return Makefile.read(self.root / "Makefile")

    def script(self, path: Path, package: str | None = None) -> ScriptInfo:
        path = path.resolve()
        if path not in self._scripts:
            source = path.read_text(encoding="utf-8")
            tree = ast.parse(source)
            hydra = _hydra_main(tree, path)
            parser, method, problem = (None, "parse_args", None) if hydra else rebuild_parser(path, tree, package)
            guard = "__main__" in source and "__name__" in source
            self._scripts[path] = ScriptInfo(path, hydra, parser, method, problem, guard)
        return self._scripts[path]

    # -- Hydra ------------------------------------------------------------------------------------

    def compose(self, config_dir: Path, config_name: str, version_base: str | None, overrides: tuple[str, ...]):
        """The composed config (with the hydra node), or the exception composing it raised."""
        key = (str(config_dir), config_name, version_base, overrides)
        if key not in self._compositions:
            from hydra import compose, initialize_config_dir
            from hydra.core.global_hydra import GlobalHydra

            if GlobalHydra.instance().is_initialized():
                GlobalHydra.instance().clear()
            try:
                with initialize_config_dir(config_dir=str(config_dir), version_base=version_base):
                    result = compose(config_name=config_name, overrides=list(overrides), return_hydra_config=True)
            except Exception as error:
                result = error
            self._compositions[key] = result
        return self._compositions[key]

    def compose_problem(self, hydra: HydraMain, overrides: list[str], multirun: bool) -> str | None:
        """None when the overrides compose (each sweep value under -m), else the error in one line."""
        from hydra.core.override_parser.overrides_parser import OverridesParser

        try:
            parsed = OverridesParser.create().parse_overrides(overrides)
        except Exception as error:
            return _one_line(error)
        variants: list[list[str]] = [list(overrides)]
        if multirun:
            choices = []
            for text, override in zip(overrides, parsed):
                if override.is_sweep_override():
                    values = list(override.sweep_string_iterator())
                    choices.append([f"{override.get_key_element()}={value}" for value in values] or [text])
                else:
                    choices.append([text])
            base = [options[0] for options in choices]
            variants = [base]
            for i, options in enumerate(choices):
                for option in options[1:]:
                    variants.append([*base[:i], option, *base[i + 1 :]])
        for variant in variants:
            result = self.compose(hydra.config_dir, hydra.config_name, hydra.version_base, tuple(variant))
            if isinstance(result, Exception):
                return _one_line(result)
        return None

    def _hydra_overrides(self, hydra: HydraMain, tokens: list[str]) -> tuple[list[str], str | None]:
        """The overrides among the tokens, placeholders replaced or dropped, or a problem."""
        overrides = []
        for token in tokens:
            if token == "...":
                continue
            match = OVERRIDE.match(token)
            if not match:
                if is_placeholder(token):
                    continue
                return [], f"`{token}` is not a Hydra override (key=value, +key=value, ~key)"
            prefix, key, package, value = match.groups()
            if is_placeholder(key):
                continue
            if is_placeholder(value):
                if "/" in key or (hydra.config_dir / key).is_dir():
                    continue  # a group choice left open (data=<dataset>)
                token = f"{prefix or ''}{key}{package or ''}=placeholder"
            overrides.append(token)
        return overrides, None

    def check_hydra(self, info: ScriptInfo, args: list[str]) -> list[str]:
        hydra = info.hydra
        multirun = False
        tokens = []
        i = 0
        while i < len(args):
            arg = args[i]
            flag, _, inline = arg.partition("=") if arg.startswith("--") else (arg, "", "")
            if flag in ("-m", "--multirun"):
                multirun = True
            elif flag in ("-i", "--info"):
                if not inline and i + 1 < len(args) and args[i + 1] in INFO_CHOICES:
                    i += 1
            elif flag in HYDRA_FLAGS:
                pass
            elif flag in HYDRA_FLAGS_WITH_VALUE:
                value = inline
                if not inline:
                    if i + 1 >= len(args):
                        return [f"{flag} needs a value"]
                    i += 1
                    value = args[i]
                if flag in ("-c", "--cfg") and value not in ("job", "hydra", "all"):
                    return [f"{flag} takes job, hydra or all, not {value!r}"]
                if flag in ("-cn", "--config-name") and not is_placeholder(value):
                    if not (hydra.config_dir / f"{value}.yaml").is_file():
                        return [f"{flag} {value}: no {value}.yaml in {_relative(hydra.config_dir, self.root)}/"]
                    hydra = HydraMain(hydra.config_dir, value, hydra.version_base)
                if flag in ("-cp", "--config-path", "-cd", "--config-dir"):
                    return []  # another config directory: nothing here to compose against
            elif arg.startswith("-") and not OVERRIDE.match(arg):
                return [f"{arg} is not a Hydra flag (-m, --cfg job, --help, -cn NAME, ...)"]
            else:
                tokens.append(arg)
            i += 1
        overrides, problem = self._hydra_overrides(hydra, tokens)
        if problem:
            return [problem]
        problem = self.compose_problem(hydra, overrides, multirun)
        if problem:
            return [f"does not compose with conf/{hydra.config_name}.yaml: {problem}"]
        return []

    # -- commands ---------------------------------------------------------------------------------

    def check_command(self, text: str, depth: int = 0) -> list[str]:
        """Problems of one command line (without file and line); `a && b`, `a; b`, `a | b` check each part."""
        parts = re.split(r"\s(?:&&|\|\||;|\|)\s", text)
        if len(parts) > 1:
            return [problem for part in parts for problem in self.check_command(part, depth)]
        tokens = split_command(text)
        while tokens and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", tokens[0]):
            tokens.pop(0)  # VAR=value before the program
        if not tokens:
            return []
        program, args = tokens[0], tokens[1:]
        if program == "make":
            return self.check_make(args, depth)
        if program not in PYTHONS:
            if program.endswith(".py") and program.startswith(PATH_PREFIXES):
                return self.check_script(program, args)
            return []
        while args and args[0].startswith("-") and args[0] not in ("-m", "-c"):
            args = args[1:]  # interpreter options such as -u
        if not args or args[0] == "-c":
            return []
        if args[0] == "-m":
            if len(args) < 2:
                return ["python -m needs a module"]
            return self.check_module(args[1], args[2:])
        return self.check_script(args[0], args[1:])

    def check_script(self, script: str, args: list[str]) -> list[str]:
        if is_placeholder(script):
            return []
        path = self.root / script
        if not path.is_file():
            return [f"{script} does not exist; fix the path (scripts: {_scripts_hint(self.root, script)})"]
        info = self.script(path)
        if info.hydra:
            return self.check_hydra(info, args)
        namespace, problems = self._parse(info, args, script)
        if problems:
            return problems
        relative = path.relative_to(self.root).as_posix()
        if relative == "src/sweep.py":
            return self.check_sweep_arguments(namespace)
        if relative == "src/study.py":
            return self.check_study_arguments(namespace)
        return []

    def _parse(self, info: ScriptInfo, args: list[str], name: str) -> tuple[argparse.Namespace | None, list[str]]:
        if info.problem:
            return None, [info.problem]
        if info.parser is None:
            return None, []
        namespace, error = parse_arguments(info, args)
        if error:
            return None, [f"{name} refuses these arguments: {error}"]
        return namespace, []

    def check_module(self, module: str, args: list[str]) -> list[str]:
        if not module.startswith("lfm.") and module != "lfm":
            top = module.split(".")[0]
            if importlib.util.find_spec(top) is None:
                return [f"python -m {module}: module {top} is not installed"]
            return []
        path = self.module_file(module)
        if path is None:
            return [f"python -m {module}: no module {module} under src/; fix the module name"]
        if path.name == "__init__.py":
            main = path.parent / "__main__.py"
            if not main.is_file():
                return [f"python -m {module}: {module} is a package without __main__.py, so it cannot run"]
            path = main
        info = self.script(path, package=module if path.name == "__main__.py" else module.rpartition(".")[0])
        if path.name != "__main__.py" and not info.has_main_guard:
            return [f"python -m {module}: {_relative(path, self.root)} has no `if __name__ == '__main__'` block"]
        _, problems = self._parse(info, args, f"python -m {module}")
        return problems

    def check_sweep_arguments(self, namespace: argparse.Namespace) -> list[str]:
        from lfm.sweeps.spec import ARGS_MACRO, load_sweep

        sweep_file = str(namespace.sweep_file)
        if is_placeholder(sweep_file):
            return []
        try:
            spec = load_sweep(self.root / sweep_file)
        except Exception as error:
            return [f"sweep file {sweep_file}: {_one_line(error)}"]
        overrides = list(getattr(namespace, "overrides", []) or [])
        if not overrides:
            return []
        program = self.root / spec.program
        if not program.is_file() or not self.script(program).hydra:
            return []
        hydra = self.script(program).hydra
        fixed = [item for item in spec.command if not item.startswith("${") and item != ARGS_MACRO]
        own, problem = self._hydra_overrides(hydra, overrides)
        if problem:
            return [problem]
        problem = self.compose_problem(hydra, [*fixed, *own], multirun=False)
        if problem:
            return [f"overrides after {sweep_file} do not compose with its runs' config: {problem}"]
        return []

    def check_study_arguments(self, namespace: argparse.Namespace) -> list[str]:
        from lfm.study.spec import load_study

        study = str(namespace.study)
        if is_placeholder(study):
            return []
        candidate = self.root / study
        try:
            load_study(str(candidate) if candidate.suffix in (".yaml", ".yml") or candidate.exists() else study)
        except Exception as error:
            return [f"study {study}: {_one_line(error)}"]
        return []

    def check_make(self, args: list[str], depth: int = 0) -> list[str]:
        makefile = self.makefile
        targets = []
        values = {}
        for arg in args:
            assignment = re.match(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$", arg)
            if assignment:
                values[assignment.group(1)] = assignment.group(2)
            elif not arg.startswith("-"):
                targets.append(arg)
        problems = [
            f"make {name}=...: the Makefile has no variable {name} (it uses {sorted(makefile.used)})"
            for name in values
            if name not in makefile.used
        ]
        for target in targets or [makefile.default_goal]:
            if is_placeholder(target):
                continue
            if target not in makefile.recipes:
                known = sorted(t for t in makefile.recipes if "$" not in t and "." not in t)
                problems.append(f"make {target}: no target {target} in the Makefile; targets: {', '.join(known)}")
                continue
            if depth > 2:
                continue
            for line in makefile.recipes[target]:
                expanded = makefile.expand(line, values).strip().lstrip("@-+").strip()
                for problem in self.check_command(expanded, depth + 1):
                    problems.append(f"make {target} runs `{expanded}`: {problem}")
        return problems

    def check_commands(self, md: Markdown) -> list[str]:
        problems = []
        for command in extract_commands(md):
            for problem in self.check_command(command.text):
                problems.append(f"{md.where(command.line)}: `{command.text}`: {problem}")
        return problems

    # -- links and paths ---------------------------------------------------------------------------

    def check_links(self, md: Markdown) -> list[str]:
        problems = []
        targets: list[tuple[int, str]] = []
        in_block = {i for block in md.blocks for i, _ in block.lines}
        for number, text in md.prose:
            targets += [(number, match.group(3)) for match in LINK.finditer(text)]
            targets += [(number, match.group(1)) for match in HTML_LINK.finditer(text)]
        for number, text in enumerate(md.lines, start=1):
            match = REFERENCE_DEFINITION.match(text)
            if match and number not in in_block:
                targets.append((number, match.group(1)))
        for number, target in targets:
            problem = self.link_problem(md, target)
            if problem:
                problems.append(f"{md.where(number)}: link `{target}`: {problem}")
        return problems

    def link_problem(self, md: Markdown, target: str) -> str | None:
        if not target or re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", target) or target.startswith("//"):
            return None  # a URL (http:, https:, mailto:, ...)
        path_part, _, anchor = target.partition("#")
        path = (md.path.parent / path_part).resolve() if path_part else md.path.resolve()
        if not path.exists():
            return f"{_relative(path, self.root)} does not exist (relative to {md.name}); fix the link"
        if anchor and path.suffix == ".md" and path.is_file():
            slugs = heading_slugs(path.read_text(encoding="utf-8"))
            if anchor not in slugs:
                return f"{_relative(path, self.root)} has no heading #{anchor} (headings: {', '.join(slugs[:8])} ...)"
        return None

    def path_problem(self, token: str) -> str | None:
        token = token.strip("`'\"(),;:.").rstrip(".,;:)")
        token = re.sub(r":\d+$", "", token)
        if not token.startswith(PATH_PREFIXES) or any(char in token for char in "<*{$") or "..." in token:
            return None
        last = token.rstrip("/").rsplit("/", 1)[-1]
        if not (token.endswith("/") or re.search(r"\.[A-Za-z0-9]+$", last)):
            return None
        if not (self.root / token).exists():
            return f"{token} does not exist in the repository; fix the path"
        return None

    def check_paths(self, md: Markdown) -> list[str]:
        problems = []
        for span in md.spans:
            for token in re.split(r"[\s,]+", span.text):
                problem = self.path_problem(token)
                if problem:
                    problems.append(f"{md.where(span.line)}: `{span.text}`: {problem}")
        for block in md.blocks:
            if block.lang not in SHELL_LANGS | CONSOLE_LANGS | {"", "text", "txt"}:
                continue
            for number, text in block.lines:
                for token in re.split(r"[\s,=]+", strip_comment(text) if block.lang != "" else text):
                    problem = self.path_problem(token)
                    if problem:
                        problems.append(f"{md.where(number)}: {problem}")
        return problems

    # -- config keys ------------------------------------------------------------------------------

    def _plain(self, config_name: str, overrides: tuple[str, ...] = ()) -> dict | None:
        from omegaconf import OmegaConf

        result = self.compose(self.conf, config_name, self.version_base, overrides)
        if isinstance(result, Exception):
            return None
        return OmegaConf.to_container(result, resolve=False)

    @cached_property
    def version_base(self) -> str | None:
        train = self.root / "src" / "train.py"
        hydra = self.script(train).hydra if train.is_file() else None
        return hydra.version_base if hydra else "1.3"

    @cached_property
    def base_configs(self) -> list[dict]:
        configs = [self._plain("train", ("experiment=lfm_resnet18_synthetic",)), self._plain("eval")]
        return [config for config in configs if config is not None]

    @cached_property
    def groups(self) -> set[str]:
        """Config groups: folders of conf/ that hold options (hydra/launcher counts as hydra/launcher)."""
        found = set()
        for path in self.conf.rglob("*.yaml"):
            if path.parent != self.conf:
                found.add(path.parent.relative_to(self.conf).as_posix())
        return found

    @cached_property
    def top_level(self) -> set[str]:
        return {key for config in self.base_configs for key in config}

    @cached_property
    def option_keys(self) -> set[str]:
        """Dotted keys that the option files of the config groups set, each at its package."""
        keys: set[str] = set()
        for group in self.groups:
            for path in (self.conf / group).glob("*.yaml"):
                package = _package(path, group)
                data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
                if not isinstance(data, dict):
                    continue
                for entry in data.pop("defaults", None) or []:
                    for name, option in entry.items() if isinstance(entry, dict) else []:
                        name = name.removeprefix("override").strip().lstrip("/")
                        target = self.conf / name.partition("@")[0] / f"{option}.yaml"
                        if "@" in name and isinstance(option, str) and target.is_file():
                            nested = yaml.safe_load(target.read_text(encoding="utf-8")) or {}
                            if isinstance(nested, dict):
                                nested.pop("defaults", None)
                                _add_keys(keys, _join(package, name.partition("@")[2]), nested)
                _add_keys(keys, package, data)
        return keys

    def key_exists(self, key: str) -> bool:
        parts = key.split(".")
        return any(_has_key(config, parts) for config in self.base_configs) or key in self.option_keys

    def override_problem(self, token: str) -> str | None:
        """The problem of one override written in the text (not on a command line), or None."""
        from hydra.core.override_parser.overrides_parser import OverridesParser

        match = OVERRIDE.match(token)
        if not match:
            return None
        prefix, key, _, value = match.groups()
        first = re.split(r"[./]", key)[0]
        if first not in self.top_level and first not in self.groups and key not in self.groups:
            return None
        if is_placeholder(key):
            return None
        if is_placeholder(value) or not value:
            token = f"{prefix or ''}{key}=placeholder"
        try:
            OverridesParser.create().parse_overrides([token])
        except Exception as error:
            return f"not a valid Hydra override: {_one_line(error)}"
        if prefix in ("+", "++"):
            return None
        if key in self.groups:
            if is_placeholder(value) or not value or value == "null" or "," in value:
                return None
            if (self.conf / key / f"{value}.yaml").is_file():
                return None
            result = self.compose(self.conf, "train", self.version_base, (token,))
            if not isinstance(result, Exception):
                return None
            options = sorted(p.stem for p in (self.conf / key).glob("*.yaml"))
            return f"{key} has no option {value} (conf/{key}/: {', '.join(options)})"
        if not self.key_exists(key):
            return f"{key} is not a key of the train or eval config; fix the key (or write +{key}=... to add one)"
        return None

    def check_config_keys(self, md: Markdown) -> list[str]:
        problems = []
        for span in md.spans:
            text = span.text.strip()
            tokens = text.split()
            overrides = [token for token in tokens if OVERRIDE.match(token)]
            if overrides and all(OVERRIDE.match(token) or is_placeholder(token) for token in tokens):
                for token in overrides:
                    problem = self.override_problem(token)
                    if problem:
                        problems.append(f"{md.where(span.line)}: `{token}`: {problem}")
                continue
            if any(char in text for char in "<*") or "..." in text:
                continue
            if not span.in_table or not DOTTED_KEY.match(text):
                continue
            if text.rsplit(".", 1)[-1].lower() in FILE_SUFFIXES or text.split(".")[0] not in self.top_level:
                continue
            if not self.key_exists(text):
                problems.append(
                    f"{md.where(span.line)}: table names `{text}`, which is not a key of the train or eval config; "
                    f"fix the key or the config"
                )
        return problems

    # -- code blocks ------------------------------------------------------------------------------

    def check_blocks(self, md: Markdown) -> list[str]:
        problems = []
        for block in md.blocks:
            where = md.where(block.line)
            if block.lang in YAML_LANGS:
                try:
                    data = yaml.safe_load(block.text)
                except yaml.YAMLError as error:
                    problems.append(
                        f"{_yaml_where(md, block, error)}: ```{block.lang} block is not valid YAML ({_yaml_error(error)}); "
                        "quote values that start with $, {, [ or hold ': ' (e.g. '${env}')"
                    )
                    continue
                problem = self.yaml_file_problem(data, block.text)
                if problem:
                    problems.append(f"{where}: {problem}")
            elif block.lang in PYTHON_LANGS:
                try:
                    compile(block.text, md.name, "exec")
                except SyntaxError as error:
                    line = block.line + (error.lineno or 1) - 1
                    problems.append(f"{md.where(line)}: ```{block.lang} block does not compile: {error.msg}")
            elif block.lang in JSON_LANGS:
                try:
                    json.loads(block.text)
                except json.JSONDecodeError as error:
                    try:
                        json.loads("{" + block.text + "}")
                    except json.JSONDecodeError:
                        line = block.line + error.lineno - 1
                        problems.append(f"{md.where(line)}: ```json block is not valid JSON: {error.msg}")
        return problems

    def yaml_file_problem(self, data, text: str) -> str | None:
        """A YAML block that is a whole sweep file or study file must load with the project's loader."""
        if not isinstance(data, dict):
            return None
        if {"program", "method", "parameters", "command"} <= data.keys():
            from lfm.sweeps.spec import load_sweep as load
        elif {"name", "seeds", "methods", "baseline", "domains"} <= data.keys():
            from lfm.study.spec import load_study as load
        else:
            return None
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "block.yaml"
            path.write_text(text)
            try:
                load(str(path))
            except Exception as error:
                return f"the ```yaml block does not load with {load.__module__}.{load.__name__}: " + _one_line(
                    error
                ).replace(str(path), "<block>")
        return None

    # -- Python names -----------------------------------------------------------------------------

    def module_file(self, module: str) -> Path | None:
        base = self.root / "src" / Path(*module.split("."))
        if base.with_suffix(".py").is_file():
            return base.with_suffix(".py")
        if (base / "__init__.py").is_file():
            return base / "__init__.py"
        return None

    def name_problem(self, dotted: str) -> str | None:
        """None when `lfm.a.b[.name[.attr]]` names a module under src/ and a name at its top level."""
        parts = dotted.split(".")
        for cut in range(len(parts), 0, -1):
            path = self.module_file(".".join(parts[:cut]))
            if path is not None:
                break
        else:
            return f"no module {dotted} under src/"
        rest = parts[cut:]
        if not rest:
            return None
        module = ".".join(parts[:cut])
        if _defines(self, path, module, rest[0], set()):
            return None
        return f"{module} ({_relative(path, self.root)}) defines no {rest[0]}"

    def check_python_names(self, md: Markdown) -> list[str]:
        problems = []
        for span in md.spans:
            match = re.match(r"^(lfm(?:\.[A-Za-z_]\w*)+)(?![\w/=-])", span.text.strip())
            if match:
                problem = self.name_problem(match.group(1))
                if problem:
                    problems.append(f"{md.where(span.line)}: `{span.text}`: {problem}; fix the name")
        for block in md.blocks:
            if block.lang not in PYTHON_LANGS:
                continue
            try:
                tree = ast.parse(block.text)
            except SyntaxError:
                continue  # reported by check_blocks
            for node in ast.walk(tree):
                names = []
                if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "lfm" and not node.level:
                    names = [f"{node.module}.{alias.name}" for alias in node.names if alias.name != "*"]
                elif isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names if alias.name.split(".")[0] == "lfm"]
                for name in names:
                    problem = self.name_problem(name)
                    if problem:
                        problems.append(f"{md.where(block.line + node.lineno - 1)}: import of {name}: {problem}")
        return problems


# ----------------------------------------------------------------------------------------------
# Helpers


def _one_line(error: BaseException | str) -> str:
    text = str(error).split("Config search path:")[0].strip() or type(error).__name__
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("See https")]
    return " ".join(lines)


def _relative(path: Path, root: Path) -> str:
    try:
        return Path(path).resolve().relative_to(root).as_posix()
    except ValueError:
        return str(path)


def _scripts_hint(root: Path, script: str) -> str:
    folder = (root / script).parent
    if folder.is_dir():
        return ", ".join(sorted(p.relative_to(root).as_posix() for p in folder.glob("*.py")))
    return "no such folder"


def _yaml_where(md: Markdown, block: Block, error: yaml.YAMLError) -> str:
    mark = getattr(error, "problem_mark", None)
    return md.where(block.line + mark.line if mark is not None else block.line)


def _yaml_error(error: yaml.YAMLError) -> str:
    problem = getattr(error, "problem", None)
    if not problem:
        return _one_line(error)
    context = getattr(error, "context", None)
    return f"{problem} {context}" if context else problem


def _package(path: Path, group: str) -> str:
    """Where a group option's keys go: its `# @package` header, else the group's path."""
    for line in path.read_text(encoding="utf-8").splitlines()[:5]:
        match = re.match(r"^#\s*@package\s+(\S+)", line)
        if match:
            package = match.group(1)
            if package == "_global_":
                return ""
            return group.replace("/", ".") if package == "_group_" else package
    return group.replace("/", ".")


def _join(*parts: str) -> str:
    return ".".join(part for part in parts if part)


def _add_keys(keys: set[str], prefix: str, data) -> None:
    if not isinstance(data, dict):
        return
    for name, value in data.items():
        key = _join(prefix, str(name))
        keys.add(key)
        _add_keys(keys, key, value)


def _has_key(config, parts: list[str]) -> bool:
    node = config
    for part in parts:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return False
    return True


def heading_slugs(text: str) -> list[str]:
    """GitHub's anchors of a Markdown file's headings (repeated ones get -1, -2, ...)."""
    slugs: list[str] = []
    seen: dict[str, int] = {}
    in_fence = False
    for line in text.split("\n"):
        if FENCE.match(line):
            in_fence = not in_fence
            continue
        match = re.match(r"^\s{0,3}#{1,6}\s+(.*?)\s*#*\s*$", line)
        if in_fence or not match:
            continue
        title = re.sub(r"`|\*\*|__|\[([^\]]*)\]\([^)]*\)", r"\1", match.group(1))
        slug = re.sub(r"[^\w\- ]", "", title.lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        slugs.append(slug if count == 0 else f"{slug}-{count}")
    return slugs


def _defines(checker: DocsChecker, path: Path, module: str, name: str, visited: set[Path]) -> bool:
    """Whether the module file defines or imports `name` at its top level (following `import *`)."""
    if path in visited:
        return False
    visited.add(path)
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in tree.body:
        for found in _top_level_names(node):
            if found == name:
                return True
        if isinstance(node, ast.ImportFrom) and any(alias.name == "*" for alias in node.names):
            source = node.module or ""
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join([*base, source] if source else base)
            target = checker.module_file(source)
            if target is not None and _defines(checker, target, source, name, visited):
                return True
    if path.name == "__init__.py" and checker.module_file(f"{module}.{name}") is not None:
        return True
    return False


def _top_level_names(node: ast.stmt) -> list[str]:
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return [node.name]
    if isinstance(node, ast.Assign):
        return [n.id for target in node.targets for n in ast.walk(target) if isinstance(n, ast.Name)]
    if isinstance(node, ast.AnnAssign | ast.AugAssign) and isinstance(node.target, ast.Name):
        return [node.target.id]
    if isinstance(node, ast.Import | ast.ImportFrom):
        return [alias.asname or alias.name.split(".")[0] for alias in node.names]
    if isinstance(node, ast.If | ast.Try):
        bodies = [node.body, node.orelse] + ([h.body for h in node.handlers] if isinstance(node, ast.Try) else [])
        return [name for body in bodies for statement in body for name in _top_level_names(statement)]
    return []


__all__ = [
    "Block",
    "Command",
    "DocsChecker",
    "Markdown",
    "Span",
    "extract_commands",
    "heading_slugs",
    "is_placeholder",
    "read_markdown",
    "split_command",
    "strip_comment",
]
