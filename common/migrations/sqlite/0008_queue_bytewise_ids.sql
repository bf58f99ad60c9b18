-- PostgreSQL's 0008 makes job ids compare bytewise; SQLite's text already
-- does (BINARY collation). Nothing to change here.
SELECT 1;
