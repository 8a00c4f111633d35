"""`legato identity compare A.png B.png` — are two photos the same person?"""

from __future__ import annotations

import json

import typer


def register(app: typer.Typer) -> None:
    identity_app = typer.Typer(help="Face-recognition models: compare photos.", no_args_is_help=True)

    @identity_app.command("compare")
    def compare(
        photo_a: str = typer.Argument(..., help="First photo (PNG, JPEG, ...)."),
        photo_b: str = typer.Argument(..., help="Second photo."),
        identity_model: str = typer.Option(
            "dlib", "--identity-model", "-m", help="dlib | arcface:PATH | curricularface:PATH | synthfaces."
        ),
        face: str = typer.Option(
            "single",
            "--face",
            help="Which face when a photo holds several: single (refuse) | largest | center.",
        ),
        threshold: float = typer.Option(
            None, "--threshold", help="Cosine similarity needed for 'same person' (default: the model's own)."
        ),
        seed: int = typer.Option(0, "--seed", help="Random seed."),
        as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    ) -> None:
        """Embed the face in each photo and say whether they are the same person."""
        import torch

        from legato.errors import InputError
        from legato.identity import load
        from legato.identity.faces import FACE_POLICIES

        if face not in FACE_POLICIES:
            raise InputError(f"--face must be one of {', '.join(FACE_POLICIES)}, got {face!r}")
        torch.manual_seed(seed)
        model = load(identity_model)
        if threshold is not None:
            model.threshold = threshold
        with torch.no_grad():
            emb = model.embed_photos([photo_a, photo_b], face=face)
        similarity = float(model.similarity(emb[0], emb[1])[0])
        same = similarity >= model.threshold
        result = {
            "a": photo_a,
            "b": photo_b,
            "model": model.name,
            "similarity": round(similarity, 6),
            "threshold": model.threshold,
            "same_person": same,
        }
        if as_json:
            typer.echo(json.dumps(result, indent=2))
            return
        verdict = "same person" if same else "different people"
        typer.echo(
            f"{verdict}: cosine similarity {similarity:.4f} (threshold {model.threshold}, {model.name})"
        )

    app.add_typer(identity_app, name="identity")
