# Fails when ops.def renames or reorders an op frozen in op_names.frozen.
#
# Files store op names and the C API exposes the enum values, so both are frozen: the frozen
# list must be a prefix of ops.def's rows, in order (new rows go at the end and need no edit
# of the list). The rows are read through the C preprocessor, so the check sees exactly what
# the compiler sees, whatever helper macros the table uses.
#
#   cmake -DCC=<c compiler> -DOPS_DEF=<ops.def> -DFROZEN=<op_names.frozen> [-DSTAMP=<file>]
#         -P check_op_names.cmake
foreach(var CC OPS_DEF FROZEN)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "check_op_names: -D${var}=... is required")
  endif()
endforeach()

# ops.def -> "ENUM name" per row.
get_filename_component(def_path "${OPS_DEF}" ABSOLUTE)
string(RANDOM LENGTH 8 tag)
set(probe "${CMAKE_CURRENT_BINARY_DIR}/check_op_names_${tag}.c")
file(WRITE "${probe}" "#define TY_OP(E, n, ...) TY_ROW_ E n ;\n#include \"${def_path}\"\n")
execute_process(COMMAND "${CC}" -E -P "${probe}" RESULT_VARIABLE rc OUTPUT_VARIABLE pp
                ERROR_VARIABLE pp_err)
file(REMOVE "${probe}")
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "check_op_names: preprocessing ${OPS_DEF} failed:\n${pp_err}")
endif()
string(REGEX MATCHALL "TY_ROW_ [A-Za-z0-9_]+ [A-Za-z0-9_]+" rows "${pp}")
list(TRANSFORM rows REPLACE "^TY_ROW_ " "")

# op_names.frozen -> "ENUM name" per line (blank lines and # comments skipped).
file(STRINGS "${FROZEN}" lines)
set(frozen "")
foreach(line IN LISTS lines)
  string(STRIP "${line}" line)
  if(line STREQUAL "" OR line MATCHES "^#")
    continue()
  endif()
  string(REGEX REPLACE "[ \t]+" " " line "${line}")
  list(APPEND frozen "${line}")
endforeach()

list(LENGTH rows nrows)
list(LENGTH frozen nfrozen)
if(nfrozen EQUAL 0)
  message(FATAL_ERROR "check_op_names: ${FROZEN} lists no ops")
endif()
math(EXPR last "${nfrozen} - 1")
foreach(i RANGE ${last})
  list(GET frozen ${i} want)
  if(i LESS nrows)
    list(GET rows ${i} got)
  else()
    set(got "(no row)")
  endif()
  if(NOT got STREQUAL want)
    message(FATAL_ERROR
      "check_op_names: op ${i} is frozen as '${want}' (${FROZEN}) but ops.def has '${got}' "
      "there: an op was renamed, removed or reordered. Serialized names and enum values "
      "never change; add new ops at the end of ops.def.")
  endif()
endforeach()
if(DEFINED STAMP)
  file(WRITE "${STAMP}" "${nrows} rows, ${nfrozen} frozen\n")
endif()
