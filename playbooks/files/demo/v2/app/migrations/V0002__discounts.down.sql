DROP TABLE coupons;
ALTER TABLE products DROP COLUMN discount_pct;
