-- Grid boundaries (a polygon of [lat, lon] points) for placing cases by location.
ALTER TABLE p_grids ADD COLUMN boundary TEXT NOT NULL DEFAULT '[]';
