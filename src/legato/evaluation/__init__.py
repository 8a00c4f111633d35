"""legato.evaluation"""
