-- The Automerge actor of each change (hex). A device may write under several actors over its
-- life (a fresh one after its store was copied or restored), so a pull leaves out only the
-- asking replica's own actor, not everything its device ever wrote. Rows stored before this
-- were all written under the device's first actor: its id's 16 bytes.
ALTER TABLE changes ADD COLUMN actor TEXT;
UPDATE changes SET actor = replace(device, '-', '');
