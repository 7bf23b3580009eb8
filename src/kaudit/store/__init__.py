"""Search over the audit log: the embedded SQLite index fed by the `store` destination
(`index`), what a search means and how it is answered with or without the index
(`query`), how results are printed (`output`) and how long audit data is kept
(`retention`)."""
