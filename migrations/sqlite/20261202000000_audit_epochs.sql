-- The `(sub, at)` index put every audit row on a random page of an index as
-- large as the whole trail: with many subjects, each batch of rows dirtied
-- one page per row. Rows now carry the `epoch` their writer was filling when
-- it wrote them (a new one every 65,536 rows or hour), and the index leads
-- with it: a batch lands in the current epoch's few pages, whatever the
-- number of subjects. `audit_epochs` lists the epochs, so that one subject's
-- rows are found with one index seek per epoch. Rows written before this
-- migration are epoch 0.
ALTER TABLE audit ADD COLUMN epoch INTEGER NOT NULL DEFAULT 0;
DROP INDEX audit_sub_at;
CREATE INDEX audit_epoch_sub_at ON audit (epoch, sub, at);
CREATE TABLE audit_epochs (epoch INTEGER PRIMARY KEY);
INSERT INTO audit_epochs (epoch) VALUES (0);
