-- Model tags (a JSON array of strings, in the order given), for operators and for
-- routing by tag.
ALTER TABLE models ADD COLUMN tags JSONB NOT NULL DEFAULT '[]'::jsonb;
