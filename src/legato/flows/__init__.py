"""A class-conditional flow-matching model on scikit-learn's 8×8 digits, and forgetting one of its classes.

Modules: `data` (the digits at 16×16, fixed split), `unet` (the velocity UNet), `train` (the recipe),
`sampling` (ODE solve from noise), `classifier` (the evaluation classifier), `weights` (shipped safetensors),
`unlearn` (`run()`: Neural-ODE adapters or full fine-tuning), `metrics`, `report`.
Nothing heavy is imported here; import the submodule you need.
"""
