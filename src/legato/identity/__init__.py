"""legato.identity"""
