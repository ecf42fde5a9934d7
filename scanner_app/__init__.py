"""scanner_app"""
