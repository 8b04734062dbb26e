"""engine.inference"""
