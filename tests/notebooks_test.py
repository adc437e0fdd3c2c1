"""Colab notebooks: stored without outputs, and each runs top to bottom in smoke mode.

Execution (nbclient + ipykernel) is marked slow: each notebook trains a (tiny) model. They
share one working folder, in order, so export_and_search reuses the quick start's run.
"""

import os
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOKS = ('quickstart.ipynb', 'export_and_search.ipynb', 'your_own_data.ipynb')


def _read(name):
  nbformat = pytest.importorskip('nbformat')
  return nbformat.read(os.path.join(REPO, 'colab', name), as_version=4)


@pytest.mark.parametrize('name', NOTEBOOKS)
def test_notebook_is_clean_and_has_smoke_parameters(name):
  nb = _read(name)
  code = [c for c in nb.cells if c.cell_type == 'code']
  assert all(not c.get('outputs') and c.get('execution_count') is None for c in code), \
      f'{name} holds outputs; save it with outputs cleared'
  assert 'STBIR_NOTEBOOK_SMOKE' in code[0].source
  assert 'find_spec(\'stbir_jax\') is None' in code[1].source  # install is a no-op when present
  assert f'colab.research.google.com/github/stbir-jax/stbir_jax/blob/main/colab/{name}' in \
      nb.cells[0].source


def test_docs_link_every_notebook_and_ci_runs_them():
  with open(os.path.join(REPO, 'docs', 'usage.md')) as f:
    usage = f.read()
  for name in NOTEBOOKS:
    assert f'colab.research.google.com/github/stbir-jax/stbir_jax/blob/main/colab/{name}' in usage
  with open(os.path.join(REPO, 'README.md')) as f:
    readme = f.read()
  with open(os.path.join(REPO, '.ci', 'run')) as f:
    ci = f.read()
  # CI runs the README's test command, then the slow tests (these notebooks among them) as a
  # command of their own.
  readme_command = 'python -m pytest -q -n 2 tests'
  assert readme_command in readme and f'run tests {readme_command}\n' in ci
  slow_command = 'python -m pytest -q -n 2 -m slow tests'
  assert f'run slow {slow_command}\n' in ci and slow_command in readme


@pytest.fixture(scope='module')
def workdir(tmp_path_factory):
  return tmp_path_factory.mktemp('notebooks')


@pytest.mark.slow
@pytest.mark.parametrize('name', NOTEBOOKS)
def test_notebook_runs_top_to_bottom(name, workdir, monkeypatch):
  nbclient = pytest.importorskip('nbclient')
  pytest.importorskip('ipykernel')
  monkeypatch.setenv('STBIR_NOTEBOOK_SMOKE', '1')
  monkeypatch.setenv('STBIR_NOTEBOOK_WORKDIR', str(workdir))
  monkeypatch.setenv('JAX_PLATFORMS', 'cpu')
  monkeypatch.setenv('PYTHONPATH', REPO + os.pathsep + os.environ.get('PYTHONPATH', ''))
  nb = _read(name)
  client = nbclient.NotebookClient(nb, timeout=600, kernel_name='python3',
                                   resources={'metadata': {'path': REPO}})
  # The kernel is this interpreter's (ipykernel's own spec points at sys.executable).
  client.kernel_manager_class = 'jupyter_client.manager.KernelManager'
  client.extra_arguments = []
  assert sys.executable
  client.execute()
  text = '\n'.join(o.get('text', '') for c in nb.cells if c.cell_type == 'code'
                   for o in c.get('outputs', []))
  assert 'smoke mode' in text
  if name == 'quickstart.ipynb':
    assert 'sketch+text  target rank' in text
  elif name == 'export_and_search.ipynb':
    assert 'indexed' in text and 'README.txt' in text and os.path.isfile(workdir / 'results.png')
    assert 'hnsw index of' in text and 'approximate: hnsw (' in text
  else:
    assert os.path.isdir(workdir / 'own_index' / 'chunks')
