-- Control orders on every kind of asset. An order names its asset by its
-- kind's fields, kept in the columns it had: `account_number` holds the
-- account acted on (a bank's, a payment platform's, a provident fund
-- centre's, or a securities account), `unit_number` the registered thing
-- (a real-estate unit, a vehicle's VIN, or the credit code of the company
-- whose equity is frozen), `security_code` the security of a securities
-- account. Securities are frozen by quantity: asked, in force, and asked
-- but not free.
ALTER TABLE orders ADD COLUMN asset_kind TEXT NOT NULL DEFAULT 'bank_account';
ALTER TABLE orders ADD COLUMN security_code TEXT;
ALTER TABLE orders ADD COLUMN quantity INTEGER;
ALTER TABLE orders ADD COLUMN controlled_quantity INTEGER;
ALTER TABLE orders ADD COLUMN shortfall_quantity INTEGER;
UPDATE orders SET asset_kind = 'real_estate' WHERE account_number IS NULL;
