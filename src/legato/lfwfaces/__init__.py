"""lfw-faces: a real-face world — a class-conditional flow-matching generator of LFW people (diffusers
`UNet2DModel`), trained by `legato lfw-faces train` from an LFW folder the user holds; the photos never ship.
"""
