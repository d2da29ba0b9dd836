; RelEx output: the first forms of an AtomSpace dump of three parsed
; sentences ("It was small." / "Tom ate an apple under a tree." / "It was
; delicious."), used by the OpenCog anaphora-resolution module.
; Source: github.com/opencog/opencog, commit 3076bfe5600bd22111d478b5ffb343482f8bb7f4,
; opencog/nlp/anaphora/atomspace_data/atomspace.scm (AGPL-3.0), unchanged
; apart from this comment and the cut.

(ListLink (stv 1.000000 1.000000)
  (AnchorNode "# New Parsed Sentence")
  (SentenceNode "sentence@d137a90d-a321-406f-ab75-223cc36935f3")
)

(ListLink (stv 1.000000 0.000000)
  (WordInstanceNode "it@c48321a8-1dca-456b-90e9-01e8b588419e")
  (WordInstanceNode "small@6f57c255-0f66-4052-b52f-0336bba411d6")
) 

(ListLink (stv 1.000000 0.000000)
  (WordInstanceNode "was@cddc5e62-f106-4f59-a983-3e9397da87e0")
  (WordInstanceNode "small@6f57c255-0f66-4052-b52f-0336bba411d6")
)

(ListLink (stv 1.000000 0.000000)
  (WordInstanceNode "it@c48321a8-1dca-456b-90e9-01e8b588419e")
  (WordInstanceNode "was@cddc5e62-f106-4f59-a983-3e9397da87e0")
)

(ListLink (stv 1.000000 0.000000)
  (WordInstanceNode "ate@9506ef1c-71ab-4e1b-bdc6-fff0d1ec8a35") 
  (WordInstanceNode "tree@fb31eb83-0271-4349-9dd8-5d2a0d248c81") 
) 

(ListLink (stv 1.000000 0.000000)
  (WordInstanceNode "Tom@765cc72e-56f7-4f43-b1e4-f3954091a5fb") 
  (WordInstanceNode "ate@9506ef1c-71ab-4e1b-bdc6-fff0d1ec8a35") 
) 

(ListLink (stv 1.000000 0.000000)
  (WordInstanceNode "Tom@765cc72e-56f7-4f43-b1e4-f3954091a5fb") 
  (WordInstanceNode "ate@9506ef1c-71ab-4e1b-bdc6-fff0d1ec8a35") 
  (WordInstanceNode "an@cb46d7f8-3188-4c0c-a3b7-3ed5274c14cc") 
  (WordInstanceNode "apple@a96a5f2d-f168-494d-8240-3c622884bffc") 
  (WordInstanceNode "under@702a4016-a416-4864-a7a0-468690e25326") 
  (WordInstanceNode "a@afb0e1df-93d8-4452-83e0-d4defc7c3373") 
  (WordInstanceNode "tree@fb31eb83-0271-4349-9dd8-5d2a0d248c81") 
  (WordInstanceNode ".@60f3db37-3513-4277-8982-3a54079de852") 
) 

(EvaluationLink (stv 1.000000 1.000000)
  (DefinedLinguisticRelationshipNode "_predadj") 
  (ListLink (stv 1.000000 0.000000)
    (WordInstanceNode "it@c48321a8-1dca-456b-90e9-01e8b588419e") 
    (WordInstanceNode "small@6f57c255-0f66-4052-b52f-0336bba411d6") 
  ) 
) 

(EvaluationLink (stv 1.000000 1.000000)
  (LinkGrammarRelationshipNode "Pa") 
  (ListLink (stv 1.000000 0.000000)
    (WordInstanceNode "was@cddc5e62-f106-4f59-a983-3e9397da87e0") 
    (WordInstanceNode "small@6f57c255-0f66-4052-b52f-0336bba411d6") 
  ) 
) 

(EvaluationLink (stv 1.000000 1.000000)
  (LinkGrammarRelationshipNode "Ss") 
  (ListLink (stv 1.000000 0.000000)
    (WordInstanceNode "Tom@765cc72e-56f7-4f43-b1e4-f3954091a5fb") 
    (WordInstanceNode "ate@9506ef1c-71ab-4e1b-bdc6-fff0d1ec8a35") 
  ) 
) 

(EvaluationLink (stv 1.000000 1.000000)
  (PrepositionalRelationshipNode "under") 
  (ListLink (stv 1.000000 0.000000)
    (WordInstanceNode "ate@9506ef1c-71ab-4e1b-bdc6-fff0d1ec8a35") 
    (WordInstanceNode "tree@fb31eb83-0271-4349-9dd8-5d2a0d248c81") 
  ) 
) 

(InheritanceLink (stv 1.000000 1.000000)
  (WordInstanceNode "it@e60e24e7-80f9-4818-b5e4-e5efc0695268") 
  (DefinedLinguisticConceptNode "pronoun") 
) 

(InheritanceLink (stv 1.000000 1.000000)
  (WordInstanceNode "Tom@765cc72e-56f7-4f43-b1e4-f3954091a5fb") 
  (DefinedLinguisticConceptNode "masculine") 
) 

(InheritanceLink (stv 1.000000 0.000000)
  (DefinedLinguisticConceptNode ".n") 
  (ConceptNode "DefinedLinguisticConcept-Subscript") 
) 
