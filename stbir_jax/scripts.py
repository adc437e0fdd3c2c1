"""The `stbir-*` commands of pyproject.toml's [project.scripts]: each runs one `python -m` program.

A command runs its program's module as `__main__` with runpy, the mechanism of `python -m`
itself, so flags, --help, output, errors and exit status are the same whichever way the program
is started (the programs define their flags only when run as `__main__`).

  stbir-train --config=configs/base.py:demo_budget --workdir=workdirs/demo_budget
  ==  python -m stbir_jax.main --config=configs/base.py:demo_budget --workdir=workdirs/demo_budget
"""

import runpy


def _command(module: str):
  def command():
    runpy.run_module(module, run_name='__main__', alter_sys=True)
  command.__doc__ = f'python -m {module}'
  command.module = module
  return command


train = _command('stbir_jax.main')
evaluate = _command('stbir_jax.evaluate')
export = _command('stbir_jax.export')
search = _command('stbir_jax.search')
demo = _command('stbir_jax.demo')
ablate = _command('stbir_jax.ablate')
compare = _command('stbir_jax.compare')
calibrate = _command('stbir_jax.calibrate')
aot = _command('stbir_jax.aot')
convert = _command('stbir_jax.convert')
prepare = _command('stbir_jax.data.prepare')
synth = _command('stbir_jax.data.stbir_synth')
show = _command('stbir_jax.data.show')
ceiling = _command('stbir_jax.data.ceiling')
soup = _command('stbir_jax.soup')
