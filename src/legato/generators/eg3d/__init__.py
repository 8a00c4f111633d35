"""Native EG3D (tri-plane 3D-aware GAN) in plain PyTorch, loaded from NVlabs pickles by name.

- `cameras`: look-at poses, FOV → intrinsics, 25-number camera vectors, the evaluation views;
- `rays`, `renderer`: ray sampling and coarse + importance volume rendering of tri-planes;
- `decoder`, `superresolution`, `triplane`: the networks (parameter names as in the released pickles);
- `generator`: the `Generator`-interface wrapper; `loading`: building it from the reader's output.
"""

from legato.generators.eg3d.cameras import CameraRig, camera_vector, fov_to_intrinsics, look_at_pose

__all__ = ["CameraRig", "camera_vector", "fov_to_intrinsics", "look_at_pose", "EG3DGenerator", "EG3DOptions",
           "build_eg3d"]


def __getattr__(name: str):
    if name in ("EG3DGenerator", "EG3DOptions"):
        from legato.generators.eg3d import generator

        return getattr(generator, name)
    if name == "build_eg3d":
        from legato.generators.eg3d.loading import build_eg3d

        return build_eg3d
    raise AttributeError(name)
