"""Native StyleGAN2 in plain PyTorch (layers named as in NVIDIA's networks) and its `Generator` wrapper."""
