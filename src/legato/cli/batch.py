"""`legato batch REQUESTS.jsonl --out DIR`: many forget requests as Ray tasks (or one after another)."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command("batch")
    def batch_cmd(
        requests: Path = typer.Argument(..., help="JSONL: one request per line, e.g. {\"identity\": "
                                        "\"person:1000003\", \"method\": \"legato\", \"iterations\": 300}."),
        out: Path = typer.Option(..., "--out", "-o", help="Folder for the runs (runs/NAME), summary.csv and "
                                 "index.html; rerunning into it skips what finished."),
        ray: str = typer.Option("local", "--ray", help="local (a Ray instance on this machine) | auto (the "
                                "cluster this machine has joined) | ADDRESS (e.g. ray://head:10001) | none (no "
                                "Ray: one request after another)."),
        cpus_per_task: float = typer.Option(1, "--cpus-per-task", help="CPUs each request declares (and its "
                                            "torch threads)."),
        gpus_per_task: float = typer.Option(0, "--gpus-per-task", help="GPUs each request declares (give "
                                            "\"device\": \"cuda\" in the requests)."),
        retries: int = typer.Option(3, help="Times a request is restarted when its worker dies; it continues "
                                    "from its last checkpoint."),
    ) -> None:
        """Run many independent forget requests; failures stay in their own row."""
        from legato.batch import run_batch

        result = run_batch(requests, out, ray=ray, cpus_per_task=cpus_per_task, gpus_per_task=gpus_per_task,
                           retries=retries)
        finished = sum(r["status"] == "finished" for r in result.rows)
        typer.echo(f"{finished} of {len(result.rows)} requests finished ({result.skipped} before this run), "
                   f"{result.failed} failed; summary: {out / 'summary.csv'}, {out / 'index.html'}")
        for row in result.rows:
            if row["status"] == "failed":
                typer.echo(f"  {row['name']}: {row['error']}")
        if result.failed:
            raise typer.Exit(1)
