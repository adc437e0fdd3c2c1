r"""Search your own photos with a sketch, a text, or both, using an exported model.

  python -m stbir_jax.search index --model=EXPORT --images=PHOTOS --out=INDEX
  python -m stbir_jax.search query --index=INDEX --sketch=shoe.png --text="red suede" -k 10 \
      --out=results.png            # or results.html; --backend=faiss for very large galleries

`index` embeds every image under PHOTOS (recursively) with the exported photo encoder. Photos
are resized exactly like the prepared datasets (aspect kept, padded to a white square:
stbir_jax.data.prepare.load_photo). It works in chunks: each chunk's embeddings and file names
are committed to INDEX/chunks/ before the next starts, so an interrupted run (or a rerun after
new photos were added) continues where it stopped. Files that are not images or cannot be
decoded are skipped, never fatal, and listed in INDEX/report.json.

INDEX layout:
  index.json              model directory, resolution, embedding size, images root
  chunks/NNNNNN.npy       float32 (n, D) embeddings of one chunk
  chunks/NNNNNN.json      {"paths": [...], "skipped": [{"file", "error"}]}; written last, so a
                          chunk without its .json is ignored (and redone)
  done.txt                every file handled so far, one a line (indexed or skipped)
  report.json             counts and the skipped files with the reason
  ann/<backend>/          an approximate index (stbir_jax/search/ann_store.py) from
                          `index --backend=...`, used by `query --backend=...`
                          (docs/usage.md: which backend when)

`query` encodes the sketch (raster of any size and polarity, or SVG / stroke JSON: see
stbir_jax/data/sketch_io.py) and/or the text, ranks the gallery by cosine similarity (exact
top-k in JAX, or FAISS) and prints the ranked paths; `--out` writes a picture grid (.png) or a
page (.html) with the query and the top k.

The package, one room per concern:
  inputs.py      SearchError; gallery photos, sketches, texts and k checked (`sketch_map`)
  index.py       `build_index`, `load_index` (`Index`), `build_ann`: the layout above
  searcher.py    `Searcher(INDEX).search(sketch, text, k)` -> [`Result`], exact or ANN backends
  ann.py         the ANN backends (FAISS IVF/HNSW, ScaNN): parameters, search, recall tuning
  ann_store.py   ANN indexes on disk: `build` (resumable), `AnnIndex` (loaded for searching)
  sharded.py     exact top-k over a gallery sharded over the device mesh (`shard_gallery`)
  rendering.py   `render_grid`, `render_html`, `write_results`, `sketch_preview`, `thumbnail`
  main.py        the program's flags and commands (`python -m stbir_jax.search`: __main__.py)
"""
