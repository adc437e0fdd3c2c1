"""The query modes: which modalities a query gives. One vocabulary for the evaluators
(config.evals.<name>.modes), the stages (stage.query), the train step and search.

  'sketch'       the text is withheld (has_text False)
  'text'         the sketch is withheld (has_sketch False)
  'sketch+text'  the query as given
"""

MODES = ('sketch', 'text', 'sketch+text')


class QueryModeError(ValueError):
  pass


def apply_mode(batch: dict, mode: str) -> dict:
  """Forces the missing modality of `mode`: a numpy batch stays numpy, a jax batch jax (inside
  the jitted step too). The withheld flag keeps its dtype; its values are all False."""
  if mode == 'sketch':
    return dict(batch, has_text=batch['has_text'] & False)
  if mode == 'text':
    return dict(batch, has_sketch=batch['has_sketch'] & False)
  if mode == 'sketch+text':
    return batch
  raise QueryModeError(f'Unknown query mode {mode!r}; valid modes: {", ".join(MODES)}.')
