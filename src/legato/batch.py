"""Many independent forget requests side by side (`legato batch REQUESTS.jsonl --out DIR`).

Each line of REQUESTS.jsonl is one request, a JSON object:

    {"identity": "person:1000003", "method": "legato", "iterations": 300, "options": {"lr": 0.001}}

- `identity` (required): any spec `legato unlearn --identity` accepts;
- `name`: the run folder's name under DIR/runs/ (default: the line number and the identity);
- `method`, `generator` (default synthfaces), `iterations`, `seed`, `n_random`, `n_fid`, `report`, `device`;
- `options`: any other setting of `UnlearnConfig` (`lr`, `distance`, `lambda_global`, …).

Each request runs as its own task: with Ray (`--ray local`, the default: a Ray instance on this machine;
`--ray auto` or an address: an existing cluster) each task declares its CPUs and GPUs, and a task whose
worker dies is retried, continuing from the run's last checkpoint; without Ray (`--ray none`) they run one
after another in this process. A request that fails (a bad photo, an unknown option) fails its own row with
its one-line error and the others finish. Finished requests (a run folder with metrics.json) are skipped on
a rerun. Runs are written as `legato unlearn` writes them (`DIR/runs/NAME.partial/` until finished, then
renamed), so an interrupted batch leaves no half-written run. `DIR/summary.csv`, `summary.json` and
`index.html` (a table linking each run's report) are rewritten as requests finish.
"""

from __future__ import annotations

import contextlib
import csv
import html
import io
import json
import os
import re
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from legato.errors import InputError, LegatoError
from legato.files import atomic_write_bytes, atomic_write_json

RUNS = "runs"
PID_FILE = "worker.pid"  # in NAME.partial/: the process running the request (to watch it, or to stop it)
RUN_KEYS = ("identity", "name", "method", "generator", "iterations", "seed", "n_random", "n_fid", "report",
            "device", "options")
SUMMARY_FIELDS = ("name", "identity", "method", "status", "error", "id_target", "id_others", "id_preservation",
                  "fid_pre", "forgotten", "seconds", "run")


@dataclass
class Request:
    line: int
    name: str
    spec: dict = field(default_factory=dict)
    error: str | None = None  # the request cannot run at all (bad JSON, unknown key): its row fails


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.")[:40] or "request"


def read_requests(path: str | Path) -> list[Request]:
    """The requests of a JSONL file; a line that is not a valid request becomes a request with an error."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"requests file {path} does not exist")
    try:
        lines = path.read_text().splitlines()
    except UnicodeDecodeError as e:
        raise InputError(f"requests file {path} is not text (one JSON object per line)") from e
    requests: list[Request] = []
    seen: set[str] = set()
    for number, text in enumerate(lines, 1):
        text = text.strip()
        if not text or text.startswith("#"):
            continue
        request = Request(number, f"{number:04d}")
        try:
            spec = json.loads(text)
        except ValueError as e:
            request.error = f"line {number} is not JSON: {e.msg}"
            requests.append(request)
            continue
        if not isinstance(spec, dict) or not isinstance(spec.get("identity"), str):
            request.error = f"line {number}: a request is a JSON object with an \"identity\" string"
            requests.append(request)
            continue
        unknown = sorted(set(spec) - set(RUN_KEYS))
        name = str(spec.get("name") or f"{number:04d}-{_slug(spec['identity'])}")
        request.name, request.spec = name, spec
        if unknown:
            request.error = (f"line {number}: unknown key(s) {', '.join(unknown)}; a request has "
                             f"{', '.join(RUN_KEYS)} (other settings go under \"options\")")
        elif _slug(name) != name:
            request.error = f"line {number}: name {name!r} is not a plain folder name (letters, digits, . _ -)"
        elif name in seen:
            request.error = f"line {number}: name {name!r} is used by an earlier request"
        elif "options" in spec and not isinstance(spec["options"], dict):
            request.error = f"line {number}: \"options\" must be a JSON object"
        seen.add(name)
        requests.append(request)
    if not requests:
        raise InputError(f"requests file {path} holds no request (one JSON object per line)")
    return requests


def _row(name: str, spec: dict) -> dict:
    """The columns every summary row has, whatever became of the request."""
    return {"name": name, "identity": spec.get("identity"), "method": spec.get("method", "legato"),
            "run": f"{RUNS}/{name}"}


def finished_metrics(run: Path) -> dict | None:
    """The metrics of a finished run folder, else None (absent, or not yet renamed from .partial)."""
    try:
        return json.loads((run / "metrics.json").read_text())
    except (OSError, ValueError):
        return None


def _config(spec: dict, generator):
    """A request's config through the options layer (`unlearning.options`): its `options` and its `method`,
    `iterations` and `seed` keys are settings under the CLI's names."""
    from legato.unlearning import options

    flat = dict(spec.get("options") or {})
    options.check_names(flat)
    flat.update({key: spec[key] for key in ("method", "iterations", "seed") if key in spec})
    return options.config_for(generator, flat)


def run_request(spec: dict, run: str | Path, threads: int = 1) -> dict:
    """Run one request into the folder `run` (in a worker); returns its summary row. Errors a user can fix
    (`LegatoError`) give a failed row with their one line; anything else too, with the traceback kept in
    `run`.error.txt. A run with a checkpoint from an earlier attempt continues from it."""
    import torch

    from legato.unlearning import options
    from legato.unlearning.run import unlearn
    from legato.unlearning.run_folder import work_dir_for

    run = Path(run)
    row = _row(run.name, spec)
    done = finished_metrics(run)
    if done is not None:  # a retried task whose first attempt finished
        return {**row, **_metric_columns(done), "status": "finished"}
    torch.set_num_threads(max(1, int(threads)))
    work = work_dir_for(run)
    t0 = time.perf_counter()
    try:
        from legato.generators import load

        generator = load(spec.get("generator", "synthfaces"), device=spec.get("device", "cpu"))
        config = _config(spec, generator)
        work.mkdir(parents=True, exist_ok=True)
        (work / PID_FILE).write_text(str(os.getpid()))
        resume = (work / "checkpoint.pt").is_file()
        n_random, n_fid = options.evaluation_sizes(config, spec.get("n_random"), spec.get("n_fid"))
        metrics = unlearn(generator, spec["identity"], run, config, resume=resume, overwrite=False,
                          n_random=n_random, n_fid=n_fid,
                          progress=False, report=bool(spec.get("report", True)),
                          generator_spec=str(spec.get("generator", "synthfaces")))
    except LegatoError as e:
        _drop_empty(work)
        return {**row, "status": "failed", "error": str(e), "seconds": round(time.perf_counter() - t0, 1)}
    except Exception as e:  # noqa: BLE001 (one request's bug must not stop the others)
        _drop_empty(work)
        run.parent.mkdir(parents=True, exist_ok=True)
        (run.parent / f"{run.name}.error.txt").write_text(traceback.format_exc())
        return {**row, "status": "failed", "error": f"{type(e).__name__}: {e} (traceback in {run.name}.error.txt)",
                "seconds": round(time.perf_counter() - t0, 1)}
    return {**row, **_metric_columns(metrics), "status": "finished"}


def _drop_empty(work: Path) -> None:
    """Remove a failed request's work folder when it holds nothing to resume (only the pid file)."""
    (work / PID_FILE).unlink(missing_ok=True)
    with contextlib.suppress(OSError):  # not empty (a checkpoint to resume from) or already gone
        work.rmdir()


def _metric_columns(metrics: dict) -> dict:
    threshold = metrics.get("threshold")
    target = metrics.get("id_target")
    return {"id_target": target, "id_others": metrics.get("id_others"),
            "id_preservation": metrics.get("id_preservation"), "fid_pre": metrics.get("fid_pre"),
            "forgotten": None if threshold is None or target is None else bool(target < threshold),
            "seconds": metrics.get("seconds_total") or metrics.get("seconds")}


def write_summary(out: Path, rows: list[dict]) -> None:
    """summary.csv, summary.json and index.html under `out` (each written whole, then renamed)."""
    rows = sorted(rows, key=lambda r: r["name"])
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=SUMMARY_FIELDS, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _cell(row.get(k)) for k in SUMMARY_FIELDS})
    atomic_write_bytes(out / "summary.csv", buf.getvalue().encode())
    atomic_write_json(out / "summary.json", rows)
    atomic_write_bytes(out / "index.html", _index_html(out, rows).encode())


def _cell(value):
    return f"{value:.4f}" if isinstance(value, float) else ("" if value is None else value)


def _index_html(out: Path, rows: list[dict]) -> str:
    finished = sum(r["status"] == "finished" for r in rows)
    head = ("<tr>" + "".join(f"<th>{h}</th>" for h in ("request", "identity", "method", "status", "id_target ↓",
                                                          "id_others ↓", "preservation ↑", "fid_pre ↓",
                                                          "seconds")) + "</tr>")
    body = []
    for r in rows:
        report = out / RUNS / r["name"] / "report.html"
        name = html.escape(r["name"])
        link = f'<a href="{RUNS}/{name}/report.html">{name}</a>' if report.is_file() else name
        if r["status"] == "failed":
            status = f'<span class="bad">failed</span>: {html.escape(str(r.get("error", "")))}'
        else:
            mark = {True: ' <span class="ok">✔ forgotten</span>', False: ' <span class="bad">✘ still '
                    'recognised</span>'}.get(r.get("forgotten"), "")
            status = f"finished{mark}"
        cells = [link, html.escape(str(r.get("identity"))), html.escape(str(r.get("method"))), status,
                 *(_cell(r.get(k)) if r.get(k) is not None else "—"
                   for k in ("id_target", "id_others", "id_preservation", "fid_pre")),
                 "—" if r.get("seconds") is None else f"{r['seconds']:.0f}"]
        body.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>legato batch</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;
padding:4px 8px;text-align:left}}.ok{{color:#197a19}}.bad{{color:#b3261e}}</style></head><body>
<h1>legato batch: {finished} of {len(rows)} requests finished</h1>
<table>{head}{''.join(body)}</table></body></html>
"""


@dataclass
class BatchResult:
    rows: list[dict]
    skipped: int  # finished before this invocation

    @property
    def failed(self) -> int:
        return sum(r["status"] == "failed" for r in self.rows)


def run_batch(requests_path: str | Path, out: str | Path, *, ray: str = "local", cpus_per_task: float = 1,
              gpus_per_task: float = 0, retries: int = 3, progress: bool = True) -> BatchResult:
    """Run every request of `requests_path` into `out`; see the module docstring. `ray`: "local" (a Ray
    instance on this machine), "auto" (the cluster this machine belongs to), a cluster address, or "none"."""
    if cpus_per_task <= 0 or gpus_per_task < 0 or retries < 0:
        raise InputError("--cpus-per-task must be positive, --gpus-per-task and --retries not negative")
    out = Path(out)
    requests = read_requests(requests_path)
    runs = out / RUNS
    runs.mkdir(parents=True, exist_ok=True)
    rows: dict[str, dict] = {}
    todo: list[Request] = []
    skipped = 0
    for r in requests:
        base = _row(r.name, r.spec)
        done = None if r.error else finished_metrics(runs / r.name)
        if r.error:
            rows[r.name] = {**base, "status": "failed", "error": r.error}
        elif done is not None:
            rows[r.name] = {**base, **_metric_columns(done), "status": "finished"}
            skipped += 1
        else:
            todo.append(r)
    write_summary(out, list(rows.values()))
    if todo:
        runner = _run_without_ray if ray == "none" else _run_with_ray
        runner(todo, runs, rows, out, ray=ray, cpus=cpus_per_task, gpus=gpus_per_task, retries=retries,
               progress=progress)
    write_summary(out, list(rows.values()))
    return BatchResult(sorted(rows.values(), key=lambda r: r["name"]), skipped)


def _progress(progress: bool, total: int):
    from contextlib import nullcontext

    if not progress:
        return nullcontext(None)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TextColumn("{task.fields[info]}"))


def _finish(rows: dict, row: dict, out: Path, bar, task) -> None:
    rows[row["name"]] = row
    write_summary(out, list(rows.values()))
    if bar is not None:
        failed = sum(r["status"] == "failed" for r in rows.values())
        bar.update(task, advance=1, info=f"last: {row['name']} {row['status']} · {failed} failed")


def _run_without_ray(todo, runs, rows, out, *, cpus, progress, **_):
    with _progress(progress, len(todo)) as bar:
        task = bar.add_task("requests", total=len(todo), info="") if bar is not None else None
        for r in todo:
            _finish(rows, run_request(r.spec, runs / r.name, threads=max(1, int(cpus))), out, bar, task)


def _run_with_ray(todo, runs, rows, out, *, ray, cpus, gpus, retries, progress):
    try:
        import ray as ray_lib
    except ImportError as e:
        raise InputError("Ray is not installed: pip install 'legato-unlearn[ray]', or run with --ray none") from e
    started_here = not ray_lib.is_initialized()
    if started_here:
        try:
            if ray == "local":  # a private instance on this machine; quiet, no dashboard
                # Ray lowers its workers' priority (niceness 15) by default; here they do all the work, and
                # at that priority any other load on the machine starves them
                os.environ.setdefault("RAY_worker_niceness", "0")
                ray_lib.init(include_dashboard=False, log_to_driver=False, configure_logging=False)
            else:
                ray_lib.init(address=ray, log_to_driver=False, configure_logging=False)
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise InputError(f"cannot join the Ray cluster {ray!r}: {e}") from e
    # a task whose worker dies (killed, out of memory) is retried; the retry continues from the checkpoint
    remote = ray_lib.remote(num_cpus=cpus, num_gpus=gpus, max_retries=retries)(run_request)
    try:
        pending = {remote.remote(r.spec, str(runs / r.name), max(1, int(cpus))): r for r in todo}
        with _progress(progress, len(todo)) as bar:
            task = bar.add_task("requests", total=len(todo), info="") if bar is not None else None
            while pending:
                ready, _ = ray_lib.wait(list(pending), num_returns=1)
                r = pending.pop(ready[0])
                try:
                    row = ray_lib.get(ready[0])
                except Exception as e:  # noqa: BLE001 (the worker died more often than it may be retried)
                    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                    row = {**_row(r.name, r.spec), "status": "failed",
                           "error": f"its worker stopped {retries + 1} times ({type(e).__name__}: {first}); "
                                    "rerun the batch to continue it from its checkpoint"}
                _finish(rows, row, out, bar, task)
    finally:
        if started_here:
            ray_lib.shutdown()
