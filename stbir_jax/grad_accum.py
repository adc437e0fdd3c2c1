"""Gradient accumulation the GradCache way (Gao et al. 2021), for losses over the whole batch.

With train.grad_accum_steps = k > 1 a plain sum of micro-batch gradients would be wrong: every
loss compares each query with the whole global batch. Instead: (1) embed the k micro-batches
without keeping activations; (2) the loss of the whole batch and its gradient w.r.t. the
embeddings and the parameters it reads directly (temperature, prototypes); (3) per micro-batch,
the forward again with a VJP against its embedding gradients, summed. The result is the
unaccumulated gradient (up to float summation order) at the activation memory of one
micro-batch, for ~1/3 more compute. Exact because every embedding row depends on its own inputs
only (the towers use group/affine norms, no batch statistics).
"""

import jax
import jax.numpy as jnp


def split_micro(x, k: int):
  """(B, ...) -> (k, B/k, ...): micro-batch j holds rows j, j+k, j+2k, ... With the batch split
  over devices in contiguous blocks, every device then holds an equal share of each micro-batch."""
  return jnp.swapaxes(x.reshape((x.shape[0] // k, k) + x.shape[1:]), 0, 1)


def merge_micro(x):
  """The inverse of split_micro: (k, B/k, ...) -> (B, ...) in the original row order."""
  return jnp.swapaxes(x, 0, 1).reshape((-1,) + x.shape[2:])


def value_and_grad(embed, head, accum: int):
  """(params, batch) -> ((loss, aux), grads) over `accum` micro-batches.

  embed(params, batch) -> per-row outputs (embeddings) of a micro-batch;
  head(params, outputs, batch) -> (loss, aux) of the whole batch from its per-row outputs.
  """

  def fn(params, batch):
    micro = jax.tree.map(lambda x: split_micro(x, accum), batch)
    # (1) A forward-only map: no activations are kept for a backward pass.
    emb = jax.tree.map(merge_micro, jax.lax.map(lambda mb: embed(params, mb), micro))
    # (2) The loss of the whole batch, differentiated w.r.t. the embeddings (and the params it
    # reads directly).
    (loss, aux), (grads, emb_grads) = jax.value_and_grad(head, argnums=(0, 1), has_aux=True)(
        params, emb, batch)

    # (3) One micro-batch at a time: recompute its forward, pull its embedding gradients back.
    def backward(acc, xs):
      mb, cotangent = xs
      _, vjp = jax.vjp(lambda p: embed(p, mb), params)
      return jax.tree.map(jnp.add, acc, vjp(cotangent)[0]), None

    cotangents = jax.tree.map(lambda x: split_micro(x, accum), emb_grads)
    grads, _ = jax.lax.scan(backward, grads, (micro, cotangents))
    return (loss, aux), grads

  return fn
