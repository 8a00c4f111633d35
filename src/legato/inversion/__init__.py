"""legato.inversion"""
