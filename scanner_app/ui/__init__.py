"""scanner_app/ui"""
