"""What the scanner and the server must agree on: the ticket code and its keys, the domain
vocabulary, and the wire schemas of the sync protocol."""
