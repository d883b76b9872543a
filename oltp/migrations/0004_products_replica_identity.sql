-- Product updates carry their before image, so the product-updates agent knows the old
-- category and the changed columns without keeping state (cache invalidation, issue 7).
-- products is small and rarely written: the extra WAL is negligible.
ALTER TABLE public.products REPLICA IDENTITY FULL;
