"""Options shared by the commands that read a finished run (`legato evaluate`, `legato sweep`), and
`--judge-crop`, which `legato unlearn` shares with them.

One definition each, so the two commands cannot drift apart in names, defaults or help.
"""

from __future__ import annotations

import typer

ADAPTER = typer.Option(..., "--adapter", "-a", help="Adapter folder of a run (OUT/adapter).")
GENERATOR = typer.Option("synthfaces", "--generator", "-g",
                         help="synthfaces | lfw-faces | digits-flow | an NVlabs .pkl | an lfw-faces folder")
IDENTITY = typer.Option(None, "--identity", "-i", help="seed:N | PHOTO | FOLDER | latent:FILE | person:N; default: "
                        "the identity stored with the run.")
TARGET_INDEX = typer.Option(0, "--target-index", help="Which photo of a folder was forgotten; the others are held "
                            "out.")
IDENTITY_MODEL = typer.Option(None, "--identity-model", help="dlib | arcface:PATH | curricularface:PATH | "
                              "synthfaces; default: the generator's own.")
JUDGE_CROP_HELP = ("How the judge finds the face in generated images: fixed (its own fixed crop; the default) | "
                   "mtcnn:DIR (MTCNN landmarks warped to the ArcFace template, the papers' ID protocol; DIR holds "
                   "pnet.npy, rnet.npy, onet.npy; needs an arcface:PATH or curricularface:PATH judge).")
JUDGE_CROP = typer.Option(None, "--judge-crop", help=JUDGE_CROP_HELP)
SEED = typer.Option(0, "--seed", help="Random seed.")
