CREATE OR REPLACE FUNCTION deltapipe._refresh_strategy(p_strategy text, p_small boolean, p_keyed boolean,
                                                      p_full_ref boolean, p_threshold numeric, p_changed bigint,
                                                      p_n_old bigint, p_dependents int, p_same boolean)
RETURNS text
LANGUAGE plpgsql
AS $fn$
-- refresh_model() step 2, when the target exists: how the change is applied,
-- whichever is cheaper. Strategy auto (p_strategy) becomes merge for a small
-- table (p_small, changed in place) and otherwise swap for a keyless model (not
-- p_keyed), a full refresh (p_full_ref) or a change of p_changed rows
-- (inserted + updated + deleted) above p_threshold of the p_n_old rows of the
-- target, else merge. A swap of a keyed table of the same shape (p_same) that
-- views read (p_dependents) becomes a merge: the table is kept, its rows change.
-- A same shape with no change at all is none. Any other strategy (swap, merge,
-- or rebuild for a new shape) is kept. Returns the strategy.
DECLARE
    strategy text := p_strategy;
BEGIN
    IF strategy = 'auto' THEN
        strategy := CASE WHEN p_small THEN 'merge'
                         WHEN NOT p_keyed OR p_full_ref OR p_changed > p_threshold * greatest(p_n_old, 1)
                         THEN 'swap' ELSE 'merge' END;
    END IF;
    IF strategy = 'swap' AND p_dependents > 0 AND p_same AND p_keyed THEN
        strategy := 'merge';  -- views read the table: keep it, change its rows
    END IF;
    IF p_same AND p_changed = 0 THEN
        strategy := 'none';
    END IF;
    RETURN strategy;
END
$fn$;

COMMENT ON FUNCTION deltapipe._refresh_strategy(text, boolean, boolean, boolean, numeric, bigint, bigint, int, boolean) IS
  'Private, refresh_model() step: choose how the change is applied (merge, swap or none), whichever is cheaper.';
