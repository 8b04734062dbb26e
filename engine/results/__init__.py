"""engine.results"""
