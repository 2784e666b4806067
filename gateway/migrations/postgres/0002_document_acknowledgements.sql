-- What the agency acknowledged of an order's documents (number and the
-- digest it computed), and whether that differs from what was sent.
ALTER TABLE orders ADD COLUMN acknowledged_documents TEXT COLLATE "C";
ALTER TABLE orders ADD COLUMN documents_mismatch BOOLEAN NOT NULL DEFAULT FALSE;
CREATE INDEX orders_documents_mismatch ON orders (created_at_ms) WHERE documents_mismatch;
