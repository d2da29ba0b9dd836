; Every kind of truth value and both attention forms, with numbers whose
; shortest decimal forms are long: a dump must give them back bit for bit.
; Written for Lockstep's tests (not from OpenCog).
(use-modules (opencog))
(define x 1)
(ConceptNode "simple" (stv 0.1 0.30000000000000004))
(ConceptNode "count" (ctv 0.7 0.9 12345.678))
(ConceptNode "interval" (itv 0.25 0.75 0.3333333333333333))
(PredicateNode "fuzzy" (ftv 0.123456789 1e-10))
(PredicateNode "probabilistic" (ptv 0.5 0.5 1e300))
(ConceptNode "evidence" (etv 3 7))
(ConceptNode "attention" (av -12.5 3 1))
(ConceptNode "attention2" (av 5 0))
(InheritanceLink (stv 0.9 0.8) (av 1 2 3)
  (ConceptNode "count")
  (ConceptNode "interval"))
(SetLink (ConceptNode "b") (ConceptNode "a"))
(SetLink (ConceptNode "a") (ConceptNode "b"))
(ReferenceLink (WordInstanceNode "w@1") (ConceptNode "w"))
; Named values, as the AtomSpace's file storage writes them. The key and
; value atoms here are atoms of this file too.
(cog-set-value! (ConceptNode "count") (PredicateNode "fuzzy") (FloatValue 1 2 0.30000000000000004))
(cog-set-value! (ConceptNode "count") (Predicate "probabilistic") (StringValue "p" "q \"r\""))
(cog-set-value! (InheritanceLink (ConceptNode "count") (ConceptNode "interval")) (ConceptNode "a") (LinkValue (FloatValue 1e-300) (ConceptNode "b") (LinkValue (StringValue "s"))))
