"""Search over the audit log: the embedded SQLite index (`index`, its tables and how an
event is read into them in `schema`) fed by the `store` destination's exporter
(`exporter`), what a search means and how it is answered with or without the index
(`query`), how results are printed (`output`) and how long audit data is kept
(`retention`).

The store reads the log: it may import `kaudit.log`, `kaudit.integrity`,
`kaudit.events`, `kaudit.config`, `kaudit.errors`, `kaudit.retry` and, below it,
`kaudit.exporters` (the exporter contract; retention also removes the file
destination's rotated files, named by `kaudit.exporters.file`). Never the sources
(gateway, console), the session, the recorder or the CLI.
"""
