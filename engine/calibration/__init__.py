"""engine.calibration"""
