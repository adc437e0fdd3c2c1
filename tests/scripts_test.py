"""The `stbir-*` commands of [project.scripts]: one per `python -m` program, each running it."""

import importlib
import os
import pathlib
import subprocess
import sys

import pytest
import tomllib

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _scripts() -> dict:
  with open(ROOT / 'pyproject.toml', 'rb') as f:
    return tomllib.load(f)['project']['scripts']


def _resolve(target: str):
  module, attr = target.split(':')
  return getattr(importlib.import_module(module), attr)


def _programs() -> set:
  """Modules with a `__main__` block: what `python -m` runs ('pkg' for pkg/__main__.py)."""
  found = set()
  for path in (ROOT / 'stbir_jax').rglob('*.py'):
    if "if __name__ == '__main__':" in path.read_text(encoding='utf-8'):
      parts = path.relative_to(ROOT).with_suffix('').parts
      found.add('.'.join(parts[:-1] if parts[-1] == '__main__' else parts))
  return found


def test_every_entry_point_resolves_and_every_program_has_one():
  scripts = _scripts()
  assert all(name.startswith('stbir-') for name in scripts)
  commands = {name: _resolve(target) for name, target in scripts.items()}
  assert all(callable(c) for c in commands.values())
  modules = [c.module for c in commands.values()]
  assert len(set(modules)) == len(modules)       # one command per program
  assert set(modules) == _programs()


@pytest.mark.parametrize('name, expected', [('stbir-prepare', '--format'),
                                            ('stbir-search', 'index')])
def test_a_command_runs_like_python_m(name, expected):
  # What pip's generated script does: import the function, exit with what it returns.
  module, attr = _scripts()[name].split(':')
  code = f'import sys; from {module} import {attr}; sys.argv[0] = {name!r}; sys.exit({attr}())'
  env = dict(os.environ, PYTHONPATH=str(ROOT))
  proc = subprocess.run([sys.executable, '-c', code, '--help'], cwd=ROOT, env=env,
                        check=False, capture_output=True, text=True, timeout=120)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert expected in proc.stdout
