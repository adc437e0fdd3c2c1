"""The descriptions of a photo: random choices (noun, adjective, which attributes to name,
the text form) and the pure function from choices to words."""

from stbir_jax.data.synth.spec import MATERIALS
from stbir_jax.data.synth.twins import pick


def _a(word):
  return ('an ' if word[0] in 'aeiou' else 'a ') + word


def text_choices(rng, category, appearance):
  """The random choices behind one description (the order of draws is the generator's)."""
  noun = pick(rng, category.nouns)
  adjective = pick(rng, category.adjectives) if rng.random() < 0.4 else ''
  with_secondary = bool(rng.random() < 0.5)
  with_material = bool(rng.random() < 0.55)
  with_pattern = bool(appearance['pattern'] != 'plain' and rng.random() < 0.75)
  return {'noun': noun, 'adjective': adjective, 'with_secondary': with_secondary,
          'with_material': with_material, 'with_pattern': with_pattern,
          'form': int(rng.integers(6))}


def text_from_choices(choices, category, appearance) -> str:
  """The description that `choices` (text_choices) give for `category` and `appearance`: a
  pure function, so ceiling.py can ask which other photos the same choices describe
  with the same words."""
  main, secondary = appearance['main_colour'], appearance['secondary_colour']
  mat_adj, mat_noun = MATERIALS[appearance['material']][:2]
  part, sec_part, plural = category.parts
  pattern_colour, pattern = appearance['pattern_colour'], appearance['pattern']
  noun = choices['noun']
  adj = choices['adjective'] + ' ' if choices['adjective'] else ''
  with_sec, with_mat = choices['with_secondary'], choices['with_material']
  with_pat, form = choices['with_pattern'], choices['form']
  sec_phrase = ''
  if with_sec:
    sec_phrase = f' with {secondary if plural else _a(secondary)} {sec_part}'
  pat_phrase = {'striped': (f'with {pattern_colour} stripes', 'striped'),
                'dotted': (f'with {pattern_colour} dots', 'polka-dot'),
                'checked': (f'with a {pattern_colour} check pattern', 'checked')
                }.get(pattern, ('', ''))
  if form == 0:
    words = adj + main + ' ' + (mat_adj + ' ' if with_mat else '') + noun
    text = f'{_a(words).capitalize()}{sec_phrase}'
    text += f', {pat_phrase[0]}.' if with_pat else '.'
  elif form == 1:
    text = f'{_a(adj + noun).capitalize()} in {main}'
    text += f', made of {mat_noun}' if with_mat else ''
    text += f'{sec_phrase}.'
    text += f' It is {pat_phrase[1]}.' if with_pat else ''
  elif form == 2:
    text = f'The {part} is {main}'
    text += f' and the {sec_part} {"are" if plural else "is"} {secondary}.' if with_sec else '.'
    text += (f' {_a(mat_adj).capitalize()} {noun}.' if with_mat
             else f' It looks like {_a(adj + noun)}.')
    text += f' The {part} has a {pattern} pattern in {pattern_colour}.' if with_pat else ''
  elif form == 3:
    text = f'Looking for {_a(main)} {noun}'
    text += f' {pat_phrase[0]}' if with_pat else ''
    text += f'{sec_phrase}.'
    text += f' The {part} is {mat_noun}.' if with_mat else ''
  elif form == 4:
    text = (f'{main} {(pat_phrase[1] + " ") if with_pat else ""}'
            f'{(mat_adj + " ") if with_mat else ""}{noun}')
    text += f', {secondary} {sec_part}' if with_sec else ''
  else:
    text = f'{_a(adj + noun).capitalize()}, mostly {main}.'
    text += f' Its {sec_part} {"are" if plural else "is"} {secondary}.' if with_sec else ''
    text += f' Made of {mat_noun}.' if with_mat else ''
    text += f' It is {pat_phrase[1]} {pat_phrase[0]}.'.replace('  ', ' ') if with_pat else ''
  return ' '.join(text.split())


def texts(rng, n, category, appearance, choices_out=None):
  """n descriptions; `choices_out`, a list, receives the choices behind each."""
  written = []
  for _ in range(n):
    choices = text_choices(rng, category, appearance)
    if choices_out is not None:
      choices_out.append(choices)
    written.append(text_from_choices(choices, category, appearance))
  return written

