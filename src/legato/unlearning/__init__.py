"""legato.unlearning"""
