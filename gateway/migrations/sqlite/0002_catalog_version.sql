-- The version of the agency set (agency and dialect files) an inquiry
-- started with: after a reload, running inquiries finish on it. NULL for
-- inquiries stored before versions were recorded (they use the current set).

ALTER TABLE inquiries ADD COLUMN catalog_version TEXT;
