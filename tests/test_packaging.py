"""The wheel a user gets from `pip install .` (not the editable install the tests run on) is complete."""

import glob
import os
import subprocess
import sys
import zipfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_wheel_ships_every_subpackage_and_the_model_card_templates(tmp_path):
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", REPO, "--no-deps", "--no-build-isolation",
                            "-w", str(tmp_path / "dist")], capture_output=True, text=True, timeout=300)  # fmt: skip
    assert build.returncode == 0, build.stderr[-3000:]
    (wheel,) = glob.glob(str(tmp_path / "dist" / "*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for init in glob.glob(os.path.join(REPO, "modeling_mlpl", "**", "__init__.py"), recursive=True):
        assert os.path.relpath(init, REPO) in names
    templates = {os.path.basename(p) for p in glob.glob(os.path.join(REPO, "model_cards", "*.j2"))}
    assert templates and {f"modeling_mlpl/model_cards/{t}" for t in templates} <= names

    # Unpacked outside the repository, the package finds its own copy of the templates.
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    probe = ("import sys; sys.path.insert(0, sys.argv[1]); import modeling_mlpl.hub.model_card as m; "
             "print(m.__file__); print(m.find_template_dir())")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", probe, str(site)], capture_output=True, text=True, cwd=tmp_path,
                         env={**os.environ, "MLPL_MODEL_CARDS": ""}, timeout=300)  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    module_file, template_dir = out.stdout.split()
    assert module_file.startswith(str(site)) and template_dir == str(site / "modeling_mlpl" / "model_cards")


def test_every_command_is_a_console_entry_point_and_a_run_scripts_wrapper():
    import importlib
    import tomllib

    with open(os.path.join(REPO, "pyproject.toml"), "rb") as f:
        scripts = tomllib.load(f)["project"]["scripts"]
    commands = sorted(os.path.basename(p)[:-3] for p in glob.glob(os.path.join(REPO, "modeling_mlpl", "commands", "*.py"))
                      if not p.endswith("__init__.py"))  # fmt: skip
    assert sorted(scripts) == [f"mlpl-{c.replace('_', '-')}" for c in commands]
    for name in commands:
        assert scripts[f"mlpl-{name.replace('_', '-')}"] == f"modeling_mlpl.commands.{name}:main"
        assert callable(importlib.import_module(f"modeling_mlpl.commands.{name}").main)
        wrapper = open(os.path.join(REPO, "run_scripts", f"{name}.py"), encoding="utf-8").read()
        assert f"from modeling_mlpl.commands.{name} import main" in wrapper
