-- The desk's presentation (card title, how events look) as last replaced through
-- `PUT /api/v2/footpath/desk/config`, so that it survives a restart and every
-- collector on the database shows the same. One row at most. `file_presentation_json`
-- is the file's `[desk]` presentation when the row was written: when the file says
-- something else at a later start, the file was edited since, and it wins (see
-- `desk::config::effective_presentation`).
CREATE TABLE desk_presentation (
    id                      INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
    presentation_json       TEXT NOT NULL,
    file_presentation_json  TEXT NOT NULL,
    saved_ms                INTEGER NOT NULL
) STRICT;
