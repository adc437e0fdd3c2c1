"""Load test of a running web demo (python -m stbir_jax.demo) on this machine: `--clients`
threads, each with its own gradio_client.Client, press the page's Search (sketch + text: the
sketch uploaded with every query) back to back for `--seconds`; a probe GETs the page every
0.2 s meanwhile. Prints requests, errors, search latency p50/p99/max, searches/s and the page's
latency, and writes benchmarks/results/demo_load.json.

  python -m stbir_jax.demo --index=INDEX --port=7860 &
  python benchmarks/demo_load.py --url=http://127.0.0.1:7860/ --sketch=S.png --text="red suede" \
      [--clients 8] [--seconds 20] [--k 10]

Only a loopback URL (127.0.0.1, localhost, ::1) is accepted: this sends traffic nowhere else.
An error is a request that raised or whose message is not a result list ("Top k of n ...").
"""

import argparse
import json
import os
import threading
import time
import urllib.parse
import urllib.request

import numpy as np

LOOPBACK = ('127.0.0.1', 'localhost', '::1')
RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'results')


def check_loopback(url: str) -> str:
  host = urllib.parse.urlsplit(url).hostname
  if host not in LOOPBACK:
    raise SystemExit(f'demo_load: --url {url}: only this machine ({", ".join(LOOPBACK)}) may be '
                     'load-tested')
  return url


def _percentiles(seconds):
  if not seconds:
    return {'p50': None, 'p99': None, 'max': None}
  p50, p99 = np.percentile(seconds, [50, 99])
  return {'p50': round(float(p50), 3), 'p99': round(float(p99), 3),
          'max': round(float(max(seconds)), 3)}


def run_load(url: str, sketch, text: str, *, clients: int = 8, seconds: float = 20.0,
             k: int = 10) -> dict:
  """-> {'clients', 'seconds', 'requests', 'errors', 'error_examples', 'search': {p50, p99, max},
  'searches_per_s', 'page': {p50, p99, max}, 'page_requests', 'page_errors'} (seconds)."""
  from gradio_client import Client, handle_file  # pylint: disable=g-import-not-at-top
  check_loopback(url)
  latencies, errors, page, page_errors = [], [], [], []
  lock = threading.Lock()
  start = threading.Event()
  deadline = [0.0]

  def client():
    try:
      c = Client(url, verbose=False)
    except Exception as e:  # pylint: disable=broad-except
      with lock:
        errors.append(f'connect: {type(e).__name__}: {e}')
      return
    start.wait()
    while time.monotonic() < deadline[0]:
      t = time.monotonic()
      try:
        message = c.predict(handle_file(str(sketch)), None, text, 'sketch+text', k,
                            api_name='/search')[2]
        error = None if message.startswith('Top ') else message
      except Exception as e:  # pylint: disable=broad-except
        error = f'{type(e).__name__}: {e}'
      with lock:
        latencies.append(time.monotonic() - t)
        if error:
          errors.append(error)

  def probe():
    start.wait()
    while time.monotonic() < deadline[0]:
      t = time.monotonic()
      try:
        urllib.request.urlopen(url, timeout=30).read()
        page.append(time.monotonic() - t)
      except OSError as e:
        page_errors.append(f'GET /: {e}')
      time.sleep(0.2)

  threads = [threading.Thread(target=client) for _ in range(clients)]
  threads.append(threading.Thread(target=probe))
  for t in threads:
    t.start()
  time.sleep(0.5)  # let the clients connect: the clock starts with every client ready
  deadline[0] = time.monotonic() + seconds
  start.set()
  for t in threads:
    t.join()
  return {'clients': clients, 'seconds': seconds, 'requests': len(latencies),
          'errors': len(errors), 'error_examples': sorted(set(errors))[:5],
          'search': _percentiles(latencies), 'searches_per_s': round(len(latencies) / seconds, 2),
          'page': _percentiles(page), 'page_requests': len(page),
          'page_errors': len(page_errors)}


def main():
  p = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--url', required=True, help='a running demo on this machine')
  p.add_argument('--sketch', required=True, help='sketch file uploaded with every query')
  p.add_argument('--text', required=True)
  p.add_argument('--clients', type=int, default=8)
  p.add_argument('--seconds', type=float, default=20.0)
  p.add_argument('--k', type=int, default=10)
  p.add_argument('--out', default=os.path.join(RESULTS, 'demo_load.json'))
  a = p.parse_args()
  if not 1 <= a.clients <= 64 or not 0 < a.seconds <= 600:
    raise SystemExit('demo_load: --clients must be 1..64 and --seconds 0..600')
  report = run_load(check_loopback(a.url), a.sketch, a.text, clients=a.clients,
                    seconds=a.seconds, k=a.k)
  report['load_average'] = os.getloadavg()
  print(f'{report["clients"]} clients x {report["seconds"]:g} s: {report["requests"]} searches '
        f'({report["searches_per_s"]}/s), {report["errors"]} errors')
  print(f'search latency s: p50 {report["search"]["p50"]}  p99 {report["search"]["p99"]}  '
        f'max {report["search"]["max"]}')
  print(f'GET / latency s:  p50 {report["page"]["p50"]}  p99 {report["page"]["p99"]}  '
        f'max {report["page"]["max"]} ({report["page_requests"]} requests, '
        f'{report["page_errors"]} errors)')
  print(f'load average {report["load_average"]}')
  for e in report['error_examples']:
    print(f'  error: {e}')
  os.makedirs(os.path.dirname(a.out), exist_ok=True)
  with open(a.out, 'w') as f:
    json.dump(report, f, indent=2)


if __name__ == '__main__':
  main()
