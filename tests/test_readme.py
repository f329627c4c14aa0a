"""The README and docs/ say what the repository does: the snippet runs, the quickstart is the Makefile's, links resolve."""

import glob
import os
import re

import yaml

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Where code, configs and scripts live (they may cite docs/<name>.md "Section"); tests/ cites nothing.
CITING_PATHS = ["modeling_mlpl", "run_scripts", "configs", "benchmarks", "model_cards", "Makefile", "pyproject.toml"]


def read(rel: str) -> str:
    with open(os.path.join(REPO, rel), encoding="utf-8") as f:
        return f.read()


def python_blocks(markdown: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", markdown, flags=re.S)


def section(markdown: str, heading: str) -> str:
    """The text under `## heading` up to the next heading of the same or a higher level."""
    match = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^#{{1,2}} |\Z)", markdown, flags=re.S | re.M)
    assert match, f"README has no '## {heading}' section"
    return match.group(1)


def make_variables(makefile: str) -> dict[str, str]:
    return {m.group(1): m.group(2).strip() for m in re.finditer(r"^(\w+)\s*[:?]?=\s*(.*)$", makefile, flags=re.M)}


def make_recipe(target: str) -> str:
    """The shell lines `make TARGET` runs, with the Makefile's simple variables expanded and continuations joined."""
    makefile = read("Makefile")
    match = re.search(rf"^{target}:[^\n]*\n((?:\t[^\n]*\n)+)", makefile, flags=re.M)
    assert match, f"Makefile has no '{target}' target with a recipe"
    recipe = match.group(1).replace("\\\n", " ")
    variables = make_variables(makefile)
    return re.sub(r"\$\((\w+)\)", lambda m: variables.get(m.group(1), m.group(0)), recipe)


def snippet_model_dir() -> str:
    snippet = next(block for block in python_blocks(read("README.md")) if "pipeline(" in block)
    return re.search(r'model_dir = "([^"]+)"', snippet).group(1)


def quickstart_config() -> dict:
    config = re.search(r"run_scripts/train.py (\S+\.yaml)", make_recipe("quickstart"))
    assert config, "make quickstart should train with a config file"
    with open(os.path.join(REPO, config.group(1)), encoding="utf-8") as f:
        return yaml.safe_load(f)


def markdown_files() -> list[str]:
    return ["README.md"] + sorted(os.path.relpath(p, REPO) for p in glob.glob(os.path.join(REPO, "docs", "*.md")))


def test_inference_snippet_runs(tiny_checkpoint, capsys):
    snippet = next(block for block in python_blocks(read("README.md")) if "pipeline(" in block)
    snippet, n = re.subn(r'model_dir = "[^"]+"', f"model_dir = {tiny_checkpoint!r}", snippet)
    assert n == 1, "the snippet should set model_dir once"
    exec(compile(snippet, "README.md", "exec"), {})
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == 4  # text, word chunks, decoded logits, LID top-3
    assert printed[-1].startswith("[[(")


def test_quickstart_commands_are_makefile_targets():
    block = re.search(r"```bash\n(.*?)```", section(read("README.md"), "Quickstart"), flags=re.S).group(1)
    targets = re.findall(r"^make (\S+)", block, flags=re.M)
    assert "quickstart" in targets
    makefile = read("Makefile")
    for target in targets:
        assert re.search(rf"^{re.escape(target)}:", makefile, flags=re.M), f"README runs `make {target}`: no such target"


def test_inference_snippet_loads_the_model_the_quickstart_writes():
    assert snippet_model_dir() == quickstart_config()["output_dir"]


def test_quickstart_trains_on_the_corpus_it_generates():
    corpus = re.search(r"run_scripts/make_synthetic_corpus.py .*?--(?:out|output_dir) (\S+)", make_recipe("quickstart"))
    assert corpus, "make quickstart should generate its corpus"
    assert os.path.normpath(quickstart_config()["cv_root"]) == os.path.join(os.path.normpath(corpus.group(1)), "cv")


def test_quickstart_config_is_a_valid_training_config():
    from modeling_mlpl.commands.train import parse_args

    config = re.search(r"run_scripts/train.py (\S+\.yaml)", make_recipe("quickstart")).group(1)
    model_args, data_args, training_args = parse_args([os.path.join(REPO, config)])
    assert training_args.output_dir == snippet_model_dir()
    assert model_args.preset == "tiny"


def test_first_screen_names_the_quickstart_and_its_model():
    first_screen = "\n".join(read("README.md").splitlines()[:30])
    assert "make quickstart" in first_screen
    assert snippet_model_dir() in first_screen


def test_relative_links_point_to_existing_files():
    missing = []
    for rel in markdown_files():
        for target in re.findall(r"\[[^\]]*\]\(([^)\s]+)\)", read(rel)):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue  # a URL or an anchor in the same page
            path = os.path.normpath(os.path.join(os.path.dirname(rel), target.split("#")[0]))
            if not os.path.exists(os.path.join(REPO, path)):
                missing.append(f"{rel}: {target}")
    assert not missing, f"links to missing files: {missing}"


def cited_docs() -> list[tuple[str, str, str | None]]:
    """(citing file, document, section or None) for every `docs/NAME.md ["Section"]` or `README "Section"` cited."""
    files = []
    for top in CITING_PATHS:
        path = os.path.join(REPO, top)
        files += [path] if os.path.isfile(path) else glob.glob(os.path.join(path, "**", "*.*"), recursive=True)
    citations = []
    for path in files:
        if not path.endswith((".py", ".yaml", ".sh", ".j2", ".toml", "Makefile")):
            continue
        with open(path, encoding="utf-8") as f:
            text = re.sub(r"\s*\n\s*#?\s*", " ", f.read())  # a citation may wrap onto a comment's next line
        for doc, title in re.findall(r"(docs/[\w-]+\.md)(?:,? \"([^\"]+)\")?", text):
            citations.append((os.path.relpath(path, REPO), doc, title or None))
        for title in re.findall(r"\bREADME,? \"([^\"]+)\"", text):  # `see README, "Environment"`
            citations.append((os.path.relpath(path, REPO), "README.md", title))
    return citations


def test_code_cites_docs_and_sections_that_exist():
    citations = cited_docs()
    assert {"docs/paper.md", "README.md"} <= {doc for _, doc, _ in citations}  # the parser finds the code's citations
    wrong = []
    for source, doc, title in citations:
        if not os.path.isfile(os.path.join(REPO, doc)):
            wrong.append(f"{source}: {doc} does not exist")
        elif title and not re.search(rf"^#+ {re.escape(title)}", read(doc), flags=re.M):
            wrong.append(f'{source}: {doc} has no section "{title}"')
    assert not wrong, wrong


def test_no_file_cites_notes_outside_the_repository():
    outside = re.compile(r"PAPER\.md|DEMO_NOTES\.md|ENVIRONMENT\.md|shared/")
    found = []
    for top in CITING_PATHS + ["README.md", "docs", ".ci"]:
        path = os.path.join(REPO, top)
        for name in [path] if os.path.isfile(path) else glob.glob(os.path.join(path, "**", "*"), recursive=True):
            if os.path.isfile(name) and not name.endswith((".pyc", ".json", ".png")):
                with open(name, encoding="utf-8", errors="replace") as f:
                    found += [f"{os.path.relpath(name, REPO)}: {m}" for m in outside.findall(f.read())]
    assert not found, found
