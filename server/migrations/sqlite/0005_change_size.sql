-- Each change's byte length, so a pull picks its rows by bytes over sizes alone and reads the
-- bytes of the rows it sends only.
ALTER TABLE changes ADD COLUMN size BIGINT NOT NULL DEFAULT 0;
UPDATE changes SET size = length(bytes);

-- Covering indexes: choosing a pull's rows (the feed's join on seq, a whole document's summed
-- size) reads index pages only, never the change rows, whose bytes would otherwise be walked
-- past to reach `size`. The per-document one replaces changes_by_doc (same leading columns).
CREATE INDEX changes_meta_by_seq ON changes (seq, doc_id, device, size);
CREATE INDEX changes_size_by_doc ON changes (doc_id, seq, size);
DROP INDEX changes_by_doc;
