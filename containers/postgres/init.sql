-- The example's database and users. testuser's password is "testpass", stored as the very SCRAM
-- secret that ../config/userlist.txt holds: ringbouncer authenticates clients against it, then
-- logs in here with the keys the client's proof yields (SCRAM pass-through).
CREATE ROLE testuser LOGIN PASSWORD 'SCRAM-SHA-256$4096:TytM+A8rmHMh+lFoF/qt5A==$XsG0RYWKsZt18zEaXD7+EoFTkmqFHNNndCynPVrKpWc=:k5y1lGfrdnnDLEXBEubeHC3G+vcjkmgV9Elzb4FH8Nc=';
CREATE DATABASE testdb OWNER testuser;
-- The life test (tools/life_test) creates usage_logs itself if it is missing.
