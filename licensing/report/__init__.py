"""Report writers: terminal, JSON, CSV and HTML. Import the submodule you need; this package stays light."""
