-- Where a device stands, in the words of Taiwan's open-data platforms: the city (縣市), the
-- district (鄉鎮市區) and the authority that runs it. Read by the SensorThings Things
-- (`properties.city`, `.district`, `.authority`) and the LASS feed (`area`); nullable, since a
-- LASS device registered by its first message knows none of them.

ALTER TABLE devices ADD COLUMN IF NOT EXISTS city text;
ALTER TABLE devices ADD COLUMN IF NOT EXISTS district text;
ALTER TABLE devices ADD COLUMN IF NOT EXISTS authority text;
CREATE INDEX IF NOT EXISTS devices_city_idx ON devices (city);
