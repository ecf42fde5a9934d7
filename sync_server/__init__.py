"""sync_server"""
