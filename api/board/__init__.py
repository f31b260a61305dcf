"""Baton's board: one web page for what runs where and what waits on whom (`routes`), from what
workflows publish (`data`), shown by pure helpers (`present`)."""
