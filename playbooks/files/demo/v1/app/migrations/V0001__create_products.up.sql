CREATE TABLE products (id INTEGER PRIMARY KEY, name TEXT NOT NULL, cents INTEGER NOT NULL);
INSERT INTO products VALUES (1, 'teapot', 1999), (2, 'mug', 250), (3, 'spoon', 100);
