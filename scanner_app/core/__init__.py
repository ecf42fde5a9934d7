"""scanner_app/core"""
